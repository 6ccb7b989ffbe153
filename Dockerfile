# Container image of vast-operator. No container engine runs in this project's CI:
# `hadolint` checks this file, and tests/cli.rs checks what the image relies on (the
# binary, built the same way, needs only the libraries of the final base image, and runs
# as uid 65532 without writing anywhere).

# The builder is pinned to the toolchain the project is tested with.
ARG RUST_VERSION=1.95.0
FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# Dependencies in a layer of their own, rebuilt only when a manifest or the lock changes:
# the workspace's manifests with empty sources first.
COPY Cargo.toml Cargo.lock ./
COPY crates/fake-vast/Cargo.toml crates/fake-vast/
COPY crates/bench/Cargo.toml crates/bench/
RUN mkdir -p src crates/fake-vast/src crates/bench/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > crates/fake-vast/src/main.rs && touch crates/fake-vast/src/lib.rs \
    && echo 'fn main() {}' > crates/bench/src/main.rs \
    && cargo build --release --locked -p vast-operator \
    && rm -rf src crates/fake-vast/src crates/bench/src

# Then the operator itself (the release build leaves the fake Vast server and axum out).
COPY src ./src
COPY crates ./crates
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked -p vast-operator \
    && cp target/release/vast-operator /vast-operator

# glibc and libgcc only, no shell, a non-root user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="vast-operator" \
      org.opencontainers.image.description="Mirrors Vast.ai serverless workergroups into Kubernetes WorkerGroup resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/vast-operator/vast-operator"
COPY --from=build /vast-operator /usr/local/bin/vast-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vast-operator"]
CMD ["run"]
