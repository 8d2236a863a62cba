"""Renders a Helm chart to plain manifests, like `helm template`, with the helm-sdkpy wheel.

helm-sdkpy (the Helm library behind ../shared/tools/lint-deploy) has no template or dry-run
action, so this runs a real `helm install` (wait off) against a stand-in Kubernetes API
served on 127.0.0.1 that accepts every object and stores nothing, and prints the manifest
Helm sent. The chart's values.schema.json is enforced as in a real install.

usage: python render-chart.py [--static] CHART RELEASE NAMESPACE [VALUES_JSON] > rendered.yaml
--static drops what only Helm uses (the `# Source:` comments, the helm.sh/chart and
app.kubernetes.io/managed-by labels), for a manifest to `kubectl apply`.
Exit 1 (with Helm's message on stderr) when the chart does not render.
"""

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import helm_sdkpy as helm

CORE = ["configmaps", "namespaces", "pods", "secrets", "serviceaccounts", "services", "nodes"]
GROUPS = {
    "apps/v1": ["daemonsets", "deployments"],
    "rbac.authorization.k8s.io/v1": ["clusterroles", "clusterrolebindings", "roles", "rolebindings"],
    "monitoring.coreos.com/v1": ["servicemonitors"],
}
CLUSTER_SCOPED = {"namespaces", "nodes", "clusterroles", "clusterrolebindings"}
KINDS = {
    "configmaps": "ConfigMap", "namespaces": "Namespace", "pods": "Pod", "secrets": "Secret",
    "serviceaccounts": "ServiceAccount", "services": "Service", "nodes": "Node",
    "daemonsets": "DaemonSet", "deployments": "Deployment", "clusterroles": "ClusterRole",
    "clusterrolebindings": "ClusterRoleBinding", "roles": "Role", "rolebindings": "RoleBinding",
    "servicemonitors": "ServiceMonitor",
}


def resource_list(group_version, names):
    return {
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
        "resources": [
            {"name": n, "singularName": n[:-1], "namespaced": n not in CLUSTER_SCOPED,
             "kind": KINDS[n], "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for n in names
        ],
    }


class StandInApi(BaseHTTPRequestHandler):
    """Just enough of the Kubernetes API for `helm install` without waiting."""

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self):
        self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                         "reason": "NotFound", "code": 404, "message": "not found"})

    def do_GET(self):
        path = urlparse(self.path).path.rstrip("/")
        if path == "/version":
            return self.reply(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/api/v1":
            return self.reply(200, resource_list("v1", CORE))
        if path == "/apis":
            groups = []
            for gv in GROUPS:
                group, version = gv.split("/")
                v = {"groupVersion": gv, "version": version}
                groups.append({"name": group, "versions": [v], "preferredVersion": v})
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv, names in GROUPS.items():
            if path == f"/apis/{gv}":
                return self.reply(200, resource_list(gv, names))
        if path.endswith("/secrets") or path.endswith("/configmaps"):
            # Helm's release storage: no earlier release.
            return self.reply(200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []})
        return self.not_found()

    def echo(self, code):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if "json" not in (self.headers.get("Content-Type") or ""):
            # Helm stores its release record (a Secret) as protobuf: answer with a bare one.
            return self.reply(code, {"kind": "Secret", "apiVersion": "v1",
                                     "metadata": {"name": "release", "uid": "0"}})
        body = json.loads(raw or b"{}")
        body.setdefault("metadata", {}).setdefault("uid", "00000000-0000-0000-0000-000000000000")
        self.reply(code, body)

    def do_POST(self):
        self.echo(201)

    def do_PUT(self):
        self.echo(200)

    def do_PATCH(self):
        self.echo(200)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--static", action="store_true")
    parser.add_argument("chart")
    parser.add_argument("release")
    parser.add_argument("namespace")
    parser.add_argument("values", nargs="?", type=json.loads)
    args = parser.parse_args()
    chart, release, namespace, values = args.chart, args.release, args.namespace, args.values

    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "kubeconfig")
        with open(kubeconfig, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: stand-in, cluster: {{server: "http://127.0.0.1:{server.server_port}"}}}}]
users: [{{name: stand-in, user: {{token: stand-in}}}}]
contexts: [{{name: stand-in, context: {{cluster: stand-in, user: stand-in, namespace: {namespace}}}}}]
current-context: stand-in
""")
        # Helm keeps caches and its registry config under these: keep them in the temp dir.
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            os.environ[var] = os.path.join(tmp, var.lower())
        try:
            config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
            result = asyncio.run(helm.Install(config).run(
                release, os.path.abspath(chart), values=values, wait=False, timeout=60))
        except helm.HelmError as e:
            print(f"{chart} does not render: {e}", file=sys.stderr)
            sys.exit(1)
        finally:
            server.shutdown()
    manifest = result.get("manifest") if isinstance(result, dict) else None
    if not manifest:
        print(f"{chart}: Helm returned no manifest: {json.dumps(result)[:500]}", file=sys.stderr)
        sys.exit(1)
    if args.static:
        manifest = static(manifest)
    sys.stdout.write(manifest.strip() + "\n")


def static(manifest):
    """The manifest without Helm's bookkeeping, documents separated by one `---` line."""
    helm_only = ("# Source: ", "helm.sh/chart: ", "app.kubernetes.io/managed-by: ")
    docs = []
    for doc in manifest.split("\n---\n"):
        lines = [l for l in doc.splitlines() if l != "---" and not l.strip().startswith(helm_only)]
        text = "\n".join(lines).strip("\n")
        if text.strip():
            docs.append(text)
    return "\n---\n".join(docs)


if __name__ == "__main__":
    main()
