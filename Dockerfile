# hookrelay: one image with the binaries; docker-compose.yml runs `receiver`, `worker`,
# `reconciler` and `console`, and
# `docker compose run --rm receiver hookrelayctl …` the tools (the receiver's service has the
# hook secret that `simulate` sends). BuildKit's built-in Dockerfile frontend (Docker 20.10 and
# newer) reads this file as it is: no `# syntax=` line, which would pull a frontend image from a
# registry at every build. The image publishes no port itself: the compose file publishes the
# receiver's hook port, and the worker has none.

# Build stage: the whole workspace, release profile, Cargo.lock as committed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p receiver -p worker -p reconciler -p console \
       -p hookrelay-tools \
    && install -m 0755 target/release/receiver target/release/worker \
       target/release/reconciler target/release/console target/release/hookrelayctl \
       /usr/local/bin/

# Runtime stage: glibc and CA certificates only, no shell, running as an unprivileged user.
# One image for the four processes (and hookrelayctl): they share one configuration file and
# most of their code, the binaries together are small, and one tag to roll out keeps every
# process of a release on the same version (the Helm chart runs each with its own command).
# No HEALTHCHECK: compose asks `<process> health`, Kubernetes probes the admin port.
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="hookrelay" \
      org.opencontainers.image.description="Okta Event Hooks into NATS JetStream, without making Okta wait" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /usr/local/bin/receiver /usr/local/bin/worker /usr/local/bin/reconciler \
     /usr/local/bin/console /usr/local/bin/hookrelayctl /usr/local/bin/
COPY config/default.toml /etc/hookrelay/default.toml
ENV HOOKRELAY_CONFIG=/etc/hookrelay/default.toml
# Numeric, so that Kubernetes' runAsNonRoot can check it (distroless's `nonroot` is 65532).
USER 65532:65532
CMD ["receiver"]
