#!/usr/bin/env bash
# Lints what ships besides the crate, with tools from PyPI only (.ci/lint-tools.sh installs
# them into a venv on first use) and no cluster, API server or helm binary:
# - the Helm chart: helm lint; renders (offline, as `helm template`) with its defaults plus an
#   image, with driverWritesSecrets=false, with every option on and with extraArgs, for the
#   schema validation below; .ci/chart_test.py asserts what the renders hold and what the
#   chart refuses on a cluster; values the chart must refuse (values.schema.json, and the
#   image checks: none set, ASCP's image, the former placeholder);
# - deploy/csi-provider-aws.yaml: must equal the chart's rendering with its defaults and the
#   placeholder image REGISTRY/csi-provider-aws;
# - the examples: built-in kinds validated against the Kubernetes schema (strict), every
#   SecretProviderClass through `csi-provider-aws check`;
# - the Dockerfile: hadolint.
#
# usage: .ci/lint-deploy.sh               lint; exit 1 on any problem
#        .ci/lint-deploy.sh --regenerate  rewrite deploy/csi-provider-aws.yaml from the chart
set -uo pipefail
cd "$(dirname "$0")/.."
CHART=charts/csi-provider-aws
DEPLOY=deploy/csi-provider-aws.yaml
# The static manifest's image: a placeholder to replace (docs/install.md, 3b).
DEPLOY_IMAGE=REGISTRY/csi-provider-aws
# The image the other renders use: the chart refuses to render without one.
IMAGE='{"image": {"repository": "registry.example.com/csi-provider-aws"}}'
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
problems=0
fail() { echo "FAIL: $*"; problems=$((problems + 1)); }

echo "--- lint tools (venv)"
V=$(bash .ci/lint-tools.sh) || { echo "cannot install the lint tools"; exit 2; }

helm() { "$V/bin/python" .ci/helm.py "$@"; }
render() { helm template "$CHART" csi-provider-aws kube-system "$@"; }

deploy_header() {
  cat <<EOF
# csi-provider-aws for \`kubectl apply -f\` (namespace kube-system): the Helm chart
# charts/csi-provider-aws rendered with its default values and the image placeholder
# $DEPLOY_IMAGE. No registry publishes this image: build and push it (docs/install.md,
# "The image"), then replace the placeholder as you apply:
#   sed 's|$DEPLOY_IMAGE|<your registry>/csi-provider-aws|' $DEPLOY | kubectl apply -f -
# Do not edit: change the chart and run \`bash .ci/lint-deploy.sh --regenerate\`. values.yaml
# explains every setting. Install the Secrets Store CSI driver first (docs/install.md).
---
EOF
}
deploy_render() {
  deploy_header
  render --static --set-json "{\"image\": {\"repository\": \"$DEPLOY_IMAGE\"}}"
}

if [ "${1:-}" = --regenerate ]; then
  deploy_render >"$TMP/deploy.yaml" && mv "$TMP/deploy.yaml" "$DEPLOY" && echo "wrote $DEPLOY" && exit 0
  exit 1
fi

echo "--- helm lint $CHART"
helm lint "$CHART" --set-json "$IMAGE" || fail "helm lint"

echo "--- hadolint Dockerfile"
"$V/bin/hadolint" --no-color Dockerfile && echo "  clean" || fail "hadolint"

echo "--- render the chart (offline, as helm template)"
ALL_ON='{"driverWritesSecrets": false, "awsRegion": "eu-west-1", "useFipsEndpoint": true,
  "cacheTTL": "2m", "podIdentityHttpTimeout": "250ms", "logFormat": "json", "shareIrsaIdentity": false,
  "eksAddonVersion": "v0.1.0-eksbuild.1", "k8sThrottlingParams": {"qps": "20", "burst": 40},
  "env": [{"name": "RUST_LOG", "value": "debug"}], "priorityClassName": "system-node-critical",
  "nodeSelector": {"node.kubernetes.io/instance-type": "m7g.large"},
  "tolerations": [{"operator": "Exists"}], "podLabels": {"team": "platform"},
  "podAnnotations": {"example.com/owner": "platform"}, "imagePullSecrets": [{"name": "registry"}],
  "dnsConfig": {"options": [{"name": "ndots", "value": "2"}]}, "commonLabels": {"tier": "node"},
  "image": {"tag": "sha256:0000000000000000000000000000000000000000000000000000000000000000"},
  "metrics": {"port": 9090, "serviceMonitor": {"enabled": true, "interval": "1m", "labels": {"release": "prometheus"}}},
  "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "10%"}}}'
EXTRA='{"extraArgs": ["--qps=20", "--log-format=json", "--mount-timeout=20s"]}'
render --set-json "$IMAGE" >"$TMP/chart-defaults.yaml" || fail "render with default values"
render --set-json "$IMAGE" --set-json '{"driverWritesSecrets": false}' >"$TMP/chart-provider-writes.yaml" \
  || fail "render with driverWritesSecrets=false"
render --set-json "$IMAGE" --set-json "$ALL_ON" >"$TMP/chart-all-options.yaml" || fail "render with every option"
render --set-json "$IMAGE" --set-json "$EXTRA" >"$TMP/chart-extra-args.yaml" || fail "render with extraArgs"

echo "--- the chart as an operator meets it (.ci/chart_test.py: defaults, ASCP's values and releases, docs/install.md's commands)"
"$V/bin/python" .ci/chart_test.py 2>&1 | sed 's/^/  /'
[ "${PIPESTATUS[0]}" = 0 ] || fail "chart_test.py"

echo "--- values the chart refuses: values.schema.json"
while IFS= read -r bad; do
  if render --set-json "$IMAGE" --set-json "$bad" >/dev/null 2>"$TMP/err"; then
    fail "the chart accepted bad values: $bad"
  elif ! grep -q "don't meet the specifications of the schema" "$TMP/err"; then
    fail "bad values $bad were refused, but not by the schema: $(cat "$TMP/err")"
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
{"extraArgs": ["--qps", "20"]}
{"extraArgs": ["-qps=20"]}
EOF

echo "--- values the chart refuses: the image"
# refuse DESCRIPTION EXPECTED-MESSAGE VALUES-ARGS...
refuse() {
  local what=$1 want=$2
  shift 2
  if render "$@" >/dev/null 2>"$TMP/err"; then
    fail "the chart rendered $what"
  elif ! grep -qF -- "$want" "$TMP/err" || ! grep -qF "docs/install.md" "$TMP/err"; then
    fail "$what was refused without saying \"$want\" and pointing to docs/install.md: $(cat "$TMP/err")"
  else
    echo "refused $what: $(sed 's/^.*execution error at [^:]*:[^:]*:[^:]*): //' "$TMP/err")"
  fi
}
refuse "the default values (no image set)" "image.repository is not set"
refuse "ASCP's image block (.ci/testdata/ascp-image-values.yaml)" "is ASCP's image" \
  --values .ci/testdata/ascp-image-values.yaml
refuse "ASCP's image from a mirror" "is ASCP's image" \
  --set-json '{"image": {"repository": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/ecr-public/aws-secrets-manager/secrets-store-csi-driver-provider-aws"}}'
refuse "the former placeholder" "is a placeholder" \
  --set-json '{"image": {"repository": "ghcr.io/csi-provider-aws/csi-provider-aws"}}'

echo "--- $DEPLOY matches the chart"
deploy_render >"$TMP/deploy.yaml" || fail "render $DEPLOY"
diff -u "$DEPLOY" "$TMP/deploy.yaml" >"$TMP/deploy.diff" \
  || { cat "$TMP/deploy.diff"; fail "$DEPLOY is out of date: run bash .ci/lint-deploy.sh --regenerate"; }
grep -qF "image: \"$DEPLOY_IMAGE:" "$DEPLOY" || fail "$DEPLOY does not name the image placeholder $DEPLOY_IMAGE"

# kubernetes-validate has no schema for custom resources: validate the built-in kinds only
# (SecretProviderClass goes through `check` below; ServiceMonitor only through helm;
# SecretSync nowhere). examples/*/values.yaml are Helm values, checked below.
builtin_only() {
  "$V/bin/python" - "$1" "$2" <<'PY'
import sys, yaml
custom = {"SecretProviderClass", "ServiceMonitor", "SecretSync"}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("kind") not in custom]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"), sort_keys=False)
PY
}
# Copies under $TMP/validate keep the files' names readable in the report.
manifests=()
for f in "$TMP"/chart-*.yaml "$DEPLOY" examples/*/*.yaml; do
  case "$f" in */values.yaml) continue ;; "$TMP"/*) name=rendered/$(basename "$f") ;; *) name=$f ;; esac
  mkdir -p "$TMP/validate/$(dirname "$name")"
  builtin_only "$f" "$TMP/validate/$name" || { fail "cannot read $f as YAML"; continue; }
  [ -s "$TMP/validate/$name" ] && manifests+=("$name")
done
echo "--- kubernetes-validate --strict (${#manifests[@]} files)"
# The four chart renders, deploy/ and the examples' manifests: fewer means a glob matched nothing.
[ "${#manifests[@]}" -ge 8 ] || fail "kubernetes-validate found only ${#manifests[@]} manifests to check"
for name in "${manifests[@]}"; do
  echo "$name:"
  (cd "$TMP/validate" && "$V/bin/kubernetes-validate" --strict --quiet "$name") 2>&1 | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || fail "kubernetes-validate $name"
done

echo "--- examples/sync-controller/values.yaml: the provider sidecar of the sync controller"
"$V/bin/python" - examples/sync-controller/values.yaml <<'PY' || fail "examples/sync-controller/values.yaml"
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
[c] = [c for c in values["providerContainer"] if c["name"] == "csi-provider-aws"]
mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
# The controller's chart mounts the volume providervol at /provider, its --provider-volume.
want = ["--provider-volume=/provider", "--driver-writes-secrets=true"]
problems = [f"args lack {a}" for a in want if a not in c["args"]]
problems += [] if mounts.get("providervol") == "/provider" else ["providervol is not mounted at /provider"]
problems += [] if any(e["name"] == "AWS_REGION" for e in c.get("env", [])) else ["no AWS_REGION"]
audiences = [a["audience"] for a in values["tokenRequestAudience"]]
problems += [] if "sts.amazonaws.com" in audiences else ["no sts.amazonaws.com token audience"]
for p in problems or ["sidecar args, volume, AWS_REGION and token audience: OK"]:
    print(f"  {p}")
sys.exit(1 if problems else 0)
PY

echo "--- csi-provider-aws check on every example SecretProviderClass"
if [ -x target/debug/csi-provider-aws ]; then
  CHECK=(target/debug/csi-provider-aws check)
else
  CHECK=(cargo run --quiet --locked --bin csi-provider-aws -- check)
fi
checked=0
while IFS= read -r f; do
  echo "$f:"
  "${CHECK[@]}" "$f" 2>&1 | sed 's/^/  /'
  [ "${PIPESTATUS[0]}" = 0 ] || fail "check $f"
  checked=$((checked + 1))
done < <(grep -l '^kind: SecretProviderClass' examples/*/*.yaml)
[ "$checked" -ge 5 ] || fail "only $checked example SecretProviderClass files were checked"

if [ "$problems" = 0 ]; then
  echo "lint-deploy.sh: all clean"
else
  echo "lint-deploy.sh: $problems problem(s)"
  exit 1
fi
