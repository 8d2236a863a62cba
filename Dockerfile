# syntax=docker/dockerfile:1
#
# csi-provider-aws: a static musl binary on an empty (scratch) image, plus the CA bundle the
# AWS SDK reads its TLS roots from. No shell, no package manager, nothing else to patch.
#
#   docker build -t REGISTRY/csi-provider-aws:0.1.0 .   (BuildKit)
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/csi-provider-aws:0.1.0 --push .
# No registry publishes this image: push it to yours and point the chart's image.repository
# at it (docs/install.md, "The image").
#
# Reproducible: the builder's tag is pinned (pin its digest as well, rust:1.95-alpine@sha256:...,
# for bit-for-bit rebuilds), dependencies come from Cargo.lock (--locked), and the release
# profile strips the binary. This Dockerfile was written and linted (hadolint) on a machine
# without a Docker daemon: it has not been built there.

FROM rust:1.95-alpine AS build
# aws-lc-sys (the TLS crypto backend) compiles C: gcc/g++ and musl-dev. It uses pregenerated
# bindings on x86_64/aarch64 musl (no clang); cmake, make and perl are for its CMake builder,
# its fallback when the plain cc build is not possible. Versions follow the pinned Alpine
# release of the base image (Alpine's repositories drop superseded versions, so pinning them
# here would break the build at the next security update).
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev gcc g++ make cmake perl ca-certificates
WORKDIR /src
COPY . .
# musl targets link statically by default; the cache mounts only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin csi-provider-aws \
    && cp target/release/csi-provider-aws /csi-provider-aws

FROM scratch
LABEL org.opencontainers.image.title="csi-provider-aws" \
      org.opencontainers.image.description="AWS Secrets Manager and SSM Parameter Store provider for the Secrets Store CSI driver" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /csi-provider-aws /csi-provider-aws
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# The user is left to the pod: the Helm chart runs it as uid 0 with every capability dropped,
# which it needs to create the socket in the root-owned hostPath directory (values.yaml says
# why). Kubernetes probes /healthz and /readyz: no HEALTHCHECK.
EXPOSE 8989
ENTRYPOINT ["/csi-provider-aws"]
