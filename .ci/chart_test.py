"""The Helm chart as an operator meets it, rendered with Helm's own SDK (helm-python-sdk):
defaults, ASCP's values and release names, every `helm install`/`helm upgrade` of this
chart that docs/install.md shows, and the refusals that need the cluster (`lookup`), the
latter against a stand-in API server that answers Helm's discovery and list calls.

usage: python .ci/chart_test.py      (with the lint venv's Python: .ci/lint-deploy.sh runs it)
"""

import http.server
import json
import os
import re
import shlex
import sys
import tempfile
import threading
import unittest

import helm_python as helm
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CHART = os.path.join(ROOT, "charts", "csi-provider-aws")
IMAGE = {"image": {"repository": "registry.example.com/csi-provider-aws"}}
NAMESPACE = "kube-system"


def merge(base, override):
    """Helm's coalescing: maps merge, anything else is replaced."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base.get(key), value) if key in base else value
    return out


def render(values, release="csi-provider-aws", kubeconfig=None):
    """The chart's documents as `helm install --dry-run` renders them (server-side when a
    kubeconfig is given: `lookup` then sees that cluster). Raises helm.HelmError."""
    if kubeconfig:
        config = helm.Config(namespace=NAMESPACE, storage_driver="memory", kubeconfig_path=kubeconfig)
        dry_run = "server"
    else:
        config = helm.Config(namespace=NAMESPACE, storage_driver="memory")
        dry_run = "client"
    release = config.install(CHART, release, values, namespace=NAMESPACE, dry_run=dry_run)
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def daemonset(docs):
    [ds] = [d for d in docs if d["kind"] == "DaemonSet"]
    return ds


def container(docs):
    [c] = daemonset(docs)["spec"]["template"]["spec"]["containers"]
    return c


def flags(docs):
    """The provider's flags as {name: [values]}, in order."""
    out = {}
    for arg in container(docs)["args"]:
        name, _, value = arg.partition("=")
        out.setdefault(name, []).append(value)
    return out


class Defaults(unittest.TestCase):
    def setUp(self):
        self.docs = render(IMAGE)
        self.pod = daemonset(self.docs)["spec"]["template"]

    def test_the_provider_runs_on_every_node_the_driver_runs_on(self):
        self.assertEqual(self.pod["spec"]["tolerations"], [{"operator": "Exists"}])
        self.assertEqual(self.pod["spec"]["nodeSelector"], {"kubernetes.io/os": "linux"})

    def test_probes_reach_a_dual_stack_listener_on_the_named_port(self):
        c = container(self.docs)
        self.assertEqual(flags(self.docs)["--metrics-addr"], ["[::]:8989"])
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            self.assertEqual(c[probe]["httpGet"]["path"], path)
            self.assertEqual(ports[c[probe]["httpGet"]["port"]], 8989)

    def test_pods_carry_ascps_app_label_outside_the_selector_and_no_chart_version(self):
        labels = self.pod["metadata"]["labels"]
        selector = daemonset(self.docs)["spec"]["selector"]["matchLabels"]
        self.assertEqual(labels["app"], "secrets-store-csi-driver-provider-aws")
        self.assertNotIn("app", selector)
        self.assertNotIn("helm.sh/chart", labels)
        self.assertTrue(all(labels[k] == v for k, v in selector.items()))
        renamed = daemonset(render(merge(IMAGE, {"nameOverride": "aws-provider"})))
        self.assertEqual(renamed["spec"]["template"]["metadata"]["labels"]["app"], "aws-provider")
        manifest = daemonset(render(merge(IMAGE, {"podLabels": {"app": "csi-secrets-store-provider-aws"}})))
        self.assertEqual(manifest["spec"]["template"]["metadata"]["labels"]["app"], "csi-secrets-store-provider-aws")

    def test_driver_writes_mode_mounts_no_kubelet_directory(self):
        self.assertEqual(flags(self.docs)["--driver-writes-secrets"], ["true"])
        paths = [v["hostPath"]["path"] for v in self.pod["spec"]["volumes"]]
        self.assertEqual(paths, ["/var/run/secrets-store-csi-providers"])
        writes = daemonset(render(merge(IMAGE, {"driverWritesSecrets": False})))["spec"]["template"]
        mounts = {m["mountPath"]: m.get("mountPropagation") for m in writes["spec"]["containers"][0]["volumeMounts"]}
        self.assertEqual(mounts["/var/lib/kubelet/pods"], "HostToContainer")

    def test_issuer_discovery_is_granted_only_when_identities_are_shared(self):
        def nonresource(docs):
            [role] = [d for d in docs if d["kind"] == "ClusterRole"]
            return [u for r in role["rules"] for u in r.get("nonResourceURLs", [])]

        self.assertIn("/openid/v1/jwks", nonresource(self.docs))
        self.assertNotIn("--share-irsa-identity", flags(self.docs))
        off = render(merge(IMAGE, {"shareIrsaIdentity": False}))
        self.assertEqual(nonresource(off), [])
        self.assertEqual(flags(off)["--share-irsa-identity"], ["false"])

    def test_extra_args_replace_the_charts_own_flags(self):
        docs = render(merge(IMAGE, {"extraArgs": ["--qps=20", "--log-format=json", "--mount-timeout=20s"]}))
        f = flags(docs)
        self.assertEqual((f["--qps"], f["--log-format"], f["--burst"], f["--mount-timeout"]), (["20"], ["json"], ["10"], ["20s"]))


class AscpValues(unittest.TestCase):
    """What an ASCP user brings: values files and release names of ASCP's chart."""

    # The keys of ASCP 3.1.1's and 2.x's values.yaml that a user sets (their meaning is kept).
    ASCP_OVERRIDES = {
        "awsRegion": "eu-west-1", "driverWritesSecrets": True, "useFipsEndpoint": True,
        "k8sThrottlingParams": {"qps": "20", "burst": "40"}, "podIdentityHttpTimeout": "250ms",
        "priorityClassName": "system-node-critical", "nodeSelector": {"team": "payments"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "secrets", "effect": "NoSchedule"}],
        "podLabels": {"team": "payments"}, "resources": {"limits": {"cpu": "50m", "memory": "100Mi"}},
        "port": 8989, "rbac": {"install": True},
    }

    def test_an_ascp_values_file_without_its_image_and_driver_blocks_installs(self):
        docs = render(merge(IMAGE, self.ASCP_OVERRIDES))
        f = flags(docs)
        self.assertEqual((f["--qps"], f["--burst"], f["--pod-identity-http-timeout"]), (["20"], ["40"], ["250ms"]))
        spec = daemonset(docs)["spec"]["template"]["spec"]
        self.assertEqual(spec["priorityClassName"], "system-node-critical")
        self.assertEqual(spec["tolerations"], self.ASCP_OVERRIDES["tolerations"])

    def test_asking_for_the_bundled_driver_is_refused_with_what_to_do(self):
        # ASCP 3.1.1's and 2.x's defaults both carry install: true (3.x adds tokenRequests).
        for driver in ({"install": True}, {"install": True, "fullnameOverride": "secrets-store-csi-driver",
                                            "tokenRequests": [{"audience": "sts.amazonaws.com"}]}):
            with self.assertRaises(helm.HelmError) as refused:
                render(merge(IMAGE, {"secrets-store-csi-driver": driver}))
            self.assertIn("secrets-store-csi-driver.install is true", str(refused.exception))
            self.assertIn("new release", str(refused.exception))
            self.assertIn("docs/install.md", str(refused.exception))
        render(merge(IMAGE, {"secrets-store-csi-driver": {"install": False}}))

    def test_ascps_image_is_refused(self):
        with open(os.path.join(ROOT, ".ci/testdata/ascp-image-values.yaml")) as f:
            ascp = yaml.safe_load(f)
        with self.assertRaises(helm.HelmError) as refused:
            render(ascp)
        self.assertIn("is ASCP's image", str(refused.exception))


class StandInApiServer:
    """Answers what `helm install --dry-run=server` asks a cluster: version, discovery, and
    the DaemonSets of the namespace (what the chart's `lookup` reads); 404 otherwise."""

    GROUPS = {
        "/api/v1": ("v1", [("serviceaccounts", "ServiceAccount", True), ("services", "Service", True)]),
        "/apis/apps/v1": ("apps/v1", [("daemonsets", "DaemonSet", True)]),
        "/apis/rbac.authorization.k8s.io/v1": ("rbac.authorization.k8s.io/v1",
                                               [("clusterroles", "ClusterRole", False),
                                                ("clusterrolebindings", "ClusterRoleBinding", False)]),
    }

    def __init__(self, daemonsets):
        self.daemonsets = daemonsets
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path = self.path.split("?")[0]
                outer.requests.append(path)
                if path == "/version":
                    return self.answer(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.5", "platform": "linux/amd64"})
                if path == "/api":
                    return self.answer(200, {"kind": "APIVersions", "versions": ["v1"]})
                if path == "/apis":
                    groups = [g for g in outer.GROUPS if g.startswith("/apis/")]
                    return self.answer(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                        {"name": g.split("/")[2], "versions": [{"groupVersion": g[6:], "version": "v1"}],
                         "preferredVersion": {"groupVersion": g[6:], "version": "v1"}} for g in groups]})
                if path in outer.GROUPS:
                    version, resources = outer.GROUPS[path]
                    return self.answer(200, {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": version,
                                             "resources": [{"name": n, "singularName": "", "namespaced": ns, "kind": k,
                                                            "verbs": ["get", "list", "create", "update", "delete"]}
                                                           for n, k, ns in resources]})
                if path == f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets":
                    return self.answer(200, {"kind": "DaemonSetList", "apiVersion": "apps/v1",
                                             "metadata": {"resourceVersion": "81234"}, "items": outer.daemonsets})
                self.answer(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

            do_POST = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.dir = tempfile.TemporaryDirectory()
        self.kubeconfig = os.path.join(self.dir.name, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write(f"""apiVersion: v1
kind: Config
clusters: [{{name: stand-in, cluster: {{server: "http://127.0.0.1:{self.server.server_port}"}}}}]
users: [{{name: stand-in, user: {{token: stand-in}}}}]
contexts: [{{name: stand-in, context: {{cluster: stand-in, user: stand-in}}}}]
current-context: stand-in
""")

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.dir.cleanup()


def ascp_daemonset(name, release, selector):
    """A DaemonSet as ASCP's chart (or its bundled driver) leaves it in the cluster."""
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": NAMESPACE, "uid": "7d3c1f0e-5a2b-4c8d-9e6f-1a2b3c4d5e6f",
                         "labels": {"app.kubernetes.io/managed-by": "Helm", **selector},
                         "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": NAMESPACE,
                                         "deprecated.daemonset.template.generation": "3"}},
            "spec": {"selector": {"matchLabels": selector}, "template": {"metadata": {"labels": selector}, "spec": {"containers": []}}}}


class ClusterRefusals(unittest.TestCase):
    """`helm upgrade <ASCP's release> ./charts/csi-provider-aws` on a real cluster."""

    ASCP = {"app": "secrets-store-csi-driver-provider-aws"}
    DRIVER = {"app": "secrets-store-csi-driver"}

    def cluster(self, daemonsets):
        server = StandInApiServer(daemonsets)
        self.addCleanup(server.close)
        return server

    def refused(self, server, release, values=IMAGE):
        with self.assertRaises(helm.HelmError) as refused:
            render(values, release=release, kubeconfig=server.kubeconfig)
        self.assertIn(f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets", server.requests, "the chart's lookup ran")
        return str(refused.exception)

    def test_an_upgrade_of_ascps_release_is_refused(self):
        server = self.cluster([
            ascp_daemonset("aws-secrets-manager-secrets-store-csi-driver-provider-aws", "aws-secrets-manager", self.ASCP),
            ascp_daemonset("secrets-store-csi-driver", "aws-secrets-manager", self.DRIVER),
        ])
        message = self.refused(server, "aws-secrets-manager")
        self.assertIn("release aws-secrets-manager owns DaemonSet kube-system/", message)
        self.assertIn("new release", message)

    def test_ascps_daemonset_name_carried_over_with_fullname_override_is_refused(self):
        server = self.cluster([ascp_daemonset("csi-secrets-store-provider-aws", "ascp", self.ASCP)])
        values = merge(IMAGE, {"fullnameOverride": "csi-secrets-store-provider-aws"})
        message = self.refused(server, "csi-provider-aws", values)
        self.assertIn("selector cannot change", message)

    def test_a_new_release_next_to_ascps_and_an_upgrade_of_its_own_are_not_refused(self):
        ours = {"app.kubernetes.io/name": "csi-provider-aws", "app.kubernetes.io/instance": "csi-provider-aws"}
        server = self.cluster([
            ascp_daemonset("aws-secrets-manager-secrets-store-csi-driver-provider-aws", "aws-secrets-manager", self.ASCP),
            ascp_daemonset("csi-provider-aws", "csi-provider-aws", ours),
        ])
        try:
            render(IMAGE, release="csi-provider-aws", kubeconfig=server.kubeconfig)
        except helm.HelmError as e:
            # The stand-in serves no OpenAPI schema, so Helm's validation after rendering fails:
            # what matters is that the chart itself rendered.
            self.assertNotIn("execution error", str(e))
            self.assertIn("validat", str(e))
        self.assertIn(f"/apis/apps/v1/namespaces/{NAMESPACE}/daemonsets", server.requests)


class DocumentedCommands(unittest.TestCase):
    """Every `helm install`/`helm upgrade` of this chart in docs/install.md, as written."""

    def commands(self):
        with open(os.path.join(ROOT, "docs", "install.md")) as f:
            text = f.read()
        blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
        for block in blocks:
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.split(" #")[0].strip()
                if line.startswith("helm ") and "./charts/csi-provider-aws" in line:
                    yield line

    def test_each_renders_and_none_upgrades_another_release(self):
        seen = 0
        for command in self.commands():
            words = shlex.split(command.replace('"$REGISTRY/csi-provider-aws"', "registry.example.com/csi-provider-aws"))
            self.assertIn(words[1], ("install", "upgrade", "template"), command)
            release = words[words.index("./charts/csi-provider-aws") - 1]
            self.assertEqual(release, "csi-provider-aws", f"{command}: only this chart's own release")
            values = {}
            for i, word in enumerate(words):
                if word in ("--set", "--set-string"):
                    key, _, value = words[i + 1].partition("=")
                    parsed = helm.parse_set_string(words[i + 1]) if word == "--set-string" else helm.parse_set_string(f"{key}={value}")
                    values = merge(values, parsed)
            self.assertIn("image", values, f"{command}: sets the image")
            docs = render(values)
            self.assertEqual(container(docs)["image"], "registry.example.com/csi-provider-aws:0.1.0")
            seen += 1
        self.assertGreaterEqual(seen, 5, "docs/install.md installs the chart in 3a and in each switch-over path A-D")


if __name__ == "__main__":
    # Helm keeps caches and registry settings under these: keep them out of $HOME.
    with tempfile.TemporaryDirectory() as tmp:
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            os.environ[var] = os.path.join(tmp, var.lower())
        os.environ.pop("KUBECONFIG", None)
        result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
