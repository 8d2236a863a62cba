#!/usr/bin/env bash
# Quick start: runs the provider against a local AWS emulator (moto) and mounts
# examples/local/secretproviderclass.yaml into ./mnt, acting as the CSI driver would: the
# pod's service-account token is exchanged with (moto's) STS for the IAM role its service
# account is annotated with, served by a stand-in Kubernetes API (fake-kube.py).
set -euo pipefail
cd "$(dirname "$0")/../.."

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="${MOTO_PORT:-$(free_port)}"
WORK="$(mktemp -d)"
MNT="${MNT:-$PWD/mnt}"
cleanup() {
  [[ -n "${PROVIDER_PID:-}" ]] && kill "$PROVIDER_PID" 2>/dev/null || true
  [[ -n "${MOTO_PID:-}" ]] && kill "$MOTO_PID" 2>/dev/null || true
  [[ -n "${KUBE_PID:-}" ]] && kill "$KUBE_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

python3 -c 'import moto.server' 2>/dev/null || python3 -m pip install --quiet 'moto[server]'
cargo build --quiet --bin csi-provider-aws
BIN=target/debug/csi-provider-aws

python3 -m moto.server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
MOTO_PID=$!
export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ENDPOINT_URL="http://127.0.0.1:$PORT"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

python3 - <<'PY'
import boto3
sm = boto3.client("secretsmanager")
sm.create_secret(Name="shop/prod/db", SecretString='{"username": "shop", "db-password": "correct-horse"}')
ssm = boto3.client("ssm")
ssm.put_parameter(Name="/shop/prod/api-url", Value="https://api.example.com", Type="String")
ssm.put_parameter(Name="/shop/prod/api-key", Value="k-123", Type="SecureString")
PY

KUBE_PORT="$(free_port)"
python3 examples/local/fake-kube.py "$KUBE_PORT" &
KUBE_PID=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$KUBE_PORT") 2>/dev/null && break; sleep 0.1; done
cat >"$WORK/kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "http://127.0.0.1:$KUBE_PORT"}}]
users: [{name: local, user: {token: local}}]
contexts: [{name: local, context: {cluster: local, user: local}}]
current-context: local
KUBECONFIG

KUBECONFIG="$WORK/kubeconfig" "$BIN" --provider-volume="$WORK" --metrics-addr=127.0.0.1:0 2>"$WORK/provider.log" &
PROVIDER_PID=$!
for _ in $(seq 100); do [[ -S "$WORK/aws.sock" ]] && break; sleep 0.1; done

rm -rf "$MNT"
"$BIN" mount --socket "$WORK/aws.sock" --spc examples/local/secretproviderclass.yaml --target "$MNT" \
  --pod shop-0 --namespace shop --service-account shop \
  --tokens '{"sts.amazonaws.com": {"token": "local-sa-token", "expirationTimestamp": "2099-01-01T00:00:00Z"}}'
echo
for f in "$MNT"/*; do printf '%s  %s\n' "$(stat -c %a "$f")" "$f"; done
echo
echo "provider log:"; cat "$WORK/provider.log"
