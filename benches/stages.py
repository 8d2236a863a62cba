#!/usr/bin/env python3
"""Where the provider's CPU goes: a `perf record --call-graph dwarf` profile summed by stage.

    PERF_DATA=/tmp/boot NODE_ONLY=1 NODE_RUNS=1 cargo bench --bench mount
    python3 benches/stages.py /tmp/boot.verified-tokens--no-cache--default- [MOUNTS]

Every sample is charged to one stage: walking its stack from the leaf up, the first frame
that names a stage decides (so malloc or a syscall counts for whoever called it, and SigV4
signing counts as signing, not as the SDK call around it). A stack naming no stage is
charged to "other" (the runtime's own scheduling, the kernel's network work on behalf of
no task). Prints milliseconds of CPU per stage for the profile, and per mount.
"""

import re
import subprocess
import sys
from collections import Counter

# (stage, pattern); order only matters within one frame: the first stage whose pattern
# matches the lowest matching frame wins.
STAGES = [
    ("TLS roots (read once per process)", r"rustls_native_certs::|load_native_certs"),
    ("heap growth (new pages, page faults)", r"sysmalloc|grow_heap|asm_exc_page_fault|new_heap"),
    ("token verification (RS256, claims)", r"identity::verify::check|jsonwebtoken::"),
    ("SDK: SigV4 signing", r"aws_sigv4::|SigV4Signer|aws_runtime::auth::"),
    ("SDK: endpoint resolution", r"endpoint_lib|resolve_endpoint|ResolveEndpoint|endpoint::DefaultResolver|orchestrator::endpoints"),
    ("SDK: (de)serialisation", r"::protocol_serde::|aws_smithy_json::|aws_smithy_xml::|aws_smithy_query::"),
    ("SDK: client and config construction", r"Client::from_conf|config::Builder::build|ConfigBag|RuntimeComponentsBuilder|RuntimePlugin|build_with_connector_fn|ConnectorBuilder|SdkConfig"),
    ("SDK: HTTP/1.1 client (hyper, TCP)", r"hyper_util::client|hyper::proto::h1|hyper::client|aws_smithy_http_client::|tokio::net::tcp"),
    ("SDK: orchestrator, interceptors, retries", r"aws_smithy_runtime|aws_smithy_runtime_api|aws_runtime::|aws_sdk_|aws_smithy_types::|aws_smithy_http::"),
    ("Kubernetes lookups", r"csi_provider_aws::kube::|kube_client::"),
    ("class parse and cache", r"csi_provider_aws::class::|serde_yaml::|unsafe_libyaml::"),
    ("render (files, jmesPath)", r"csi_provider_aws::render::|jmespath::"),
    ("request decode", r"csi_provider_aws::request::|ProstDecoder|prost::encoding::.*merge|DecodeBuf"),
    ("response encode", r"server::response::|ProstEncoder|tonic::codec::encode|EncodeBuf"),
    ("logging and spans", r"tracing_subscriber::|tracing_core::|tracing::span|telemetry::"),
    ("metrics", r"csi_provider_aws::metrics::|prometheus_client::"),
    ("identity and credential cache", r"csi_provider_aws::identity::|moka::"),
    ("shared fetches and value cache", r"csi_provider_aws::aws::shared|csi_provider_aws::aws::fetch"),
    ("gRPC server (tonic, h2, socket)", r"h2::|hyper::proto::h2|tonic::|tower::|csi_provider_aws::server::"),
    ("mount orchestration", r"csi_provider_aws::mount::"),
    ("tokio runtime (scheduler, timers, wakeups)", r"tokio::"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in STAGES]


def samples(path):
    """Yields each sample's stack, leaf first, as symbol names."""
    out = subprocess.run(
        ["perf", "script", "-i", path, "-F", "ip,sym", "--no-inline"],
        capture_output=True, text=True, check=True,
    ).stdout
    stack = []
    for line in out.splitlines():
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        parts = line.split(None, 1)
        stack.append(parts[1] if len(parts) > 1 else parts[0])
    if stack:
        yield stack


def stage(stack):
    for frame in stack:
        for name, pattern in COMPILED:
            if pattern.search(frame):
                return name
    return "other (kernel work for no task, the runtime's idle loop)"


def main():
    path = sys.argv[1]
    mounts = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    header = subprocess.run(["perf", "report", "-i", path, "--header-only"], capture_output=True, text=True).stdout
    found = re.search(r"sample_freq \} = (\d+)", header)
    freq = int(found.group(1)) if found else 4999
    counts = Counter(stage(s) for s in samples(path))
    total = sum(counts.values())
    print(f"| stage | CPU ms | us per mount | share |\n|---|---:|---:|---:|")
    for name, n in counts.most_common():
        ms = n * 1000.0 / freq
        print(f"| {name} | {ms:.1f} | {ms * 1000 / mounts:.0f} | {100.0 * n / total:.0f} % |")
    ms = total * 1000.0 / freq
    print(f"| **all** | **{ms:.1f}** | **{ms * 1000 / mounts:.0f}** | 100 % |")


if __name__ == "__main__":
    main()
