# syntax=docker/dockerfile:1
# hookrelay: one image with the binaries; docker-compose.yml runs `receiver` and `worker`, and
# `docker compose run --rm worker hookrelayctl …` the tools.

# Build stage: the whole workspace, release profile, Cargo.lock as committed.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p receiver -p worker -p hookrelay-tools \
    && install -m 0755 target/release/receiver target/release/worker \
       target/release/hookrelayctl /usr/local/bin/

# Runtime stage: glibc and CA certificates only, no shell, running as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/receiver /usr/local/bin/worker /usr/local/bin/hookrelayctl \
     /usr/local/bin/
COPY config/default.toml /etc/hookrelay/default.toml
ENV HOOKRELAY_CONFIG=/etc/hookrelay/default.toml
USER nonroot:nonroot
EXPOSE 8082
CMD ["receiver"]
