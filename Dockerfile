# syntax=docker/dockerfile:1.7
#
# The `mussikon` server image.
#
# Stages: `chef` (toolchain + cargo-chef) -> `planner` (dependency recipe from the manifests) ->
# `build` (dependencies compiled in their own layer, cached until Cargo.toml/Cargo.lock change;
# then the sources, release profile; debug info stripped (115 MB -> 18 MB), symbols kept for
# backtraces) -> `runtime` (Debian slim, the binary only, non-root).
#
# Contract with deploy/compose and deploy/k8s (and deploy/scripts/run-as-image.sh, which runs the
# release binary exactly as this image does):
#   - entrypoint `mussikon serve`, settings from MUSSIKON_* variables (see
#     deploy/config/mussikon.example.toml); MUSSIKON_LISTEN=0.0.0.0:8080, data in
#     MUSSIKON_DATA_DIR=/var/lib/mussikon, which must be a volume;
#   - two ports: 8080, the API, /health, /health/ready and /metrics; 7000, the Raft peer RPCs
#     (/raft/...) when MUSSIKON_CLUSTER_PEER_LISTEN=0.0.0.0:7000 is set, as compose.prod.yml and the
#     Kubernetes ConfigMap set it on cluster nodes (unset, as on a single node, the peer RPCs
#     would be on 8080 and 7000 stays closed). Only cluster members need to reach 7000;
#   - the root filesystem may be read-only: the server writes only under the data directory;
#   - runs as uid/gid 10001;
#   - health check through `mussikon healthcheck` (GET /health/ready), no curl in the image.
# The runtime is Debian slim rather than distroless so that the backup job
# (deploy/k8s/base/backup-cronjob.yaml) can run its POSIX sh script with this same image.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: this layer is reused while Cargo.toml and Cargo.lock are unchanged.
RUN cargo chef cook --release --locked -p mussikon-server --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p mussikon-server \
    && install -D -m 0755 target/release/mussikon /out/mussikon \
    && strip --strip-debug /out/mussikon \
    && install -d -m 0750 /out/data

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mussikon" \
      org.opencontainers.image.description="MussikOn: matching musicians to gigs (HTTP API, embedded engine, Raft replication)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="MussikOn" \
      org.opencontainers.image.source="https://example.invalid/mussikon" \
      org.opencontainers.image.documentation="https://example.invalid/mussikon/blob/main/docs/operations.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

RUN groupadd --system --gid 10001 mussikon \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/mussikon \
       --shell /usr/sbin/nologin mussikon
COPY --from=build /out/mussikon /usr/local/bin/mussikon
COPY --from=build --chown=10001:10001 /out/data /var/lib/mussikon

ENV MUSSIKON_MODE=production \
    MUSSIKON_LISTEN=0.0.0.0:8080 \
    MUSSIKON_DATA_DIR=/var/lib/mussikon \
    MUSSIKON_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/mussikon
VOLUME ["/var/lib/mussikon"]
EXPOSE 8080/tcp 7000/tcp
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["mussikon", "healthcheck", "--timeout-ms", "3000"]
ENTRYPOINT ["mussikon"]
CMD ["serve"]
