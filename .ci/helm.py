"""`helm lint` and `helm template` for CI, offline, with the helm-python-sdk wheel (Helm's Go SDK
behind a C ABI; no helm binary, no cluster, no API server).

usage: python helm.py lint CHART [VALUES...]
       python helm.py template [--static] CHART RELEASE NAMESPACE [VALUES...]

VALUES, merged in order as Helm merges `-f` files (maps merge, anything else is replaced):
  --values FILE      a YAML values file
  --set-json JSON    a JSON object of values

template renders as `helm template` does (an install with --dry-run=client): the chart's
values.schema.json and its `fail` calls are enforced, and the manifest comes out in Helm's
install order. --static drops what only Helm uses (the `# Source:` comments and the
helm.sh/chart and app.kubernetes.io/managed-by labels), for a manifest to `kubectl apply`.
Exit 1 with Helm's message on stderr when the chart does not lint or render.
"""

import argparse
import json
import os
import sys
import tempfile

import helm_python as helm
import yaml


def merge(base, override):
    """Helm's coalescing of two values files: nested maps merge, the override wins otherwise."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return override
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(base.get(key), value) if key in base else value
    return out


def values_from(args):
    values = {}
    for kind, text in args.sources or []:
        if kind == "values":
            with open(text) as f:
                loaded = yaml.safe_load(f) or {}
        else:
            loaded = json.loads(text)
        if not isinstance(loaded, dict):
            sys.exit(f"{text}: values must be a map")
        values = merge(values, loaded)
    return values


class Source(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        sources = getattr(namespace, "sources", None) or []
        sources.append(("json" if option_string == "--set-json" else "values", value))
        namespace.sources = sources


def add_values(parser):
    parser.add_argument("--values", "-f", action=Source, dest="sources", metavar="FILE")
    parser.add_argument("--set-json", action=Source, dest="sources", metavar="JSON")


def lint(args):
    report = helm.lint(os.path.abspath(args.chart), values_from(args))
    names = {1: "INFO", 2: "WARNING", 3: "ERROR"}
    errors = 0
    for m in report.get("messages") or []:
        severity = m.get("severity", 0)
        print(f"  {names.get(severity, severity)} {m.get('path', '')}: {m.get('error')}")
        errors += severity >= 3
    for e in report.get("errors") or []:
        print(f"  ERROR {e}")
        errors += 1
    return 1 if errors else 0


def template(args):
    values = values_from(args)
    try:
        config = helm.Config(namespace=args.namespace, storage_driver="memory")
        release = config.install(
            os.path.abspath(args.chart), args.release, values, namespace=args.namespace, dry_run="client")
    except helm.HelmError as e:
        print(f"{args.chart} does not render: {e}", file=sys.stderr)
        return 1
    manifest = (release or {}).get("manifest")
    if not manifest:
        print(f"{args.chart}: Helm returned no manifest: {json.dumps(release)[:500]}", file=sys.stderr)
        return 1
    if args.static:
        manifest = static(manifest)
    sys.stdout.write(manifest.strip() + "\n")
    return 0


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("lint")
    p.add_argument("chart")
    add_values(p)
    p = commands.add_parser("template")
    p.add_argument("--static", action="store_true")
    p.add_argument("chart")
    p.add_argument("release")
    p.add_argument("namespace")
    add_values(p)
    args = parser.parse_args()
    # Helm keeps caches and registry settings under these: keep them out of $HOME.
    with tempfile.TemporaryDirectory() as tmp:
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            os.environ[var] = os.path.join(tmp, var.lower())
        os.environ.pop("KUBECONFIG", None)
        sys.exit(lint(args) if args.command == "lint" else template(args))


if __name__ == "__main__":
    main()
