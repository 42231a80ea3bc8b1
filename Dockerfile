# syntax=docker/dockerfile:1
#
# Switchboard's image: built with the locked dependencies, run as a non-root user on
# debian:bookworm-slim, the database in the volume /var/lib/switchboard.
#
#   docker build -t switchboard .
#   docker run -d -p 8080:8080 -v switchboard-data:/var/lib/switchboard \
#       -e SWITCHBOARD_ADMIN_TOKEN=change-me-to-a-long-random-token switchboard
#
# Offline: run deploy/vendor.sh first; with vendor/ in the build context the build reads
# every crate from it (cargo --offline) and needs no network but the two base images.
# Without vendor/, cargo fetches the crates from crates.io into a BuildKit cache mount.
# docs/OPERATIONS.md, "Container and systemd", has the details.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target caches persist between builds (BuildKit); the binary is copied
# out of the target cache, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    offline=""; \
    if [ -f vendor/cargo-config.toml ]; then \
        cat vendor/cargo-config.toml >> .cargo/config.toml; \
        offline="--offline"; \
    fi; \
    cargo build --release --locked $offline --bin switchboard; \
    install -D -m 0755 target/release/switchboard /out/switchboard

FROM debian:bookworm-slim AS run
# A fixed uid (10001), so volume ownership and host-side permissions are predictable, and
# USER is numeric so an orchestrator can tell it is not root (runAsNonRoot).
RUN groupadd --system --gid 10001 switchboard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/switchboard --shell /usr/sbin/nologin switchboard \
    && install -d -m 0700 -o switchboard -g switchboard /var/lib/switchboard
# TLS roots for deliveries and PostgreSQL (rustls reads the system store; the build image
# has it, so the run stage needs no package download).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/switchboard /usr/local/bin/switchboard

ENV SWITCHBOARD_LISTEN=0.0.0.0:8080 \
    SWITCHBOARD_DATABASE_URL=sqlite:///var/lib/switchboard/switchboard.db
VOLUME ["/var/lib/switchboard"]
EXPOSE 8080
USER 10001:10001
WORKDIR /var/lib/switchboard

# `switchboard health` GETs /health on http://127.0.0.1:8080 (SWITCHBOARD_URL to change it):
# exit 0 on 200, non-zero otherwise.
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/switchboard", "health"]
# SIGTERM starts the graceful stop: requests and attempts in flight get
# --shutdown-grace-ms (10 s); give `docker stop` more (compose.yaml: stop_grace_period).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/switchboard"]
CMD ["serve"]
