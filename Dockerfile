# syntax=docker/dockerfile:1
#
# csi-provider-aws: a static binary on an empty (scratch) image, with the CA bundle the AWS
# SDK reads its TLS roots from and an nsswitch.conf that looks names up in the runtime's
# /etc/hosts before DNS. No shell, no package manager, nothing else to patch.
#
# Two ways to the same runtime stage (the last one), which differ only in where its three
# files come from:
#   docker build -t REGISTRY/csi-provider-aws:0.1.0 .
#       compiles the binary in the `build` stage (BuildKit; docs/install.md, "The image")
#   bash image/build.sh
#       compiles it on the host, stages it in target/image/ and builds this file with
#       --build-arg BINARY=prebuilt: the image localhost/csi-provider-aws:dev that CI runs
#       under the chart's pod spec (podman, runc)
#
# Both compile the same way: a static-pie glibc binary (-C target-feature=+crt-static,
# Debian 12's glibc 2.36, whose `files` and `dns` lookups are part of libc itself, so no NSS
# module is loaded at run time), the release profile, --locked.

# `build` or `prebuilt`: which stage provides /out.
ARG BINARY=build

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-gnu" \
    && RUSTFLAGS="-C target-feature=+crt-static" \
       cargo build --release --locked --target "$target" --bin csi-provider-aws \
    && mkdir /out \
    && cp "target/$target/release/csi-provider-aws" /out/ \
    && cp /etc/ssl/certs/ca-certificates.crt image/nsswitch.conf /out/

# What image/build.sh staged: the same three files, built on the host.
FROM scratch AS prebuilt
COPY out/ /out/

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

FROM scratch
LABEL org.opencontainers.image.title="csi-provider-aws" \
      org.opencontainers.image.description="AWS Secrets Manager and SSM Parameter Store provider for the Secrets Store CSI driver" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=binary /out/nsswitch.conf /etc/nsswitch.conf
COPY --from=binary /out/csi-provider-aws /csi-provider-aws
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The user is left to the pod: the Helm chart runs it as uid 0 with every capability dropped,
# which it needs to create the socket in the root-owned hostPath directory (values.yaml says
# why). Kubernetes probes /healthz and /readyz: no HEALTHCHECK.
EXPOSE 8989
ENTRYPOINT ["/csi-provider-aws"]
