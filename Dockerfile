# Container image of the operator. Not built in this project's CI (no container engine
# runs there); the packaging issue will add a build check and the Helm chart.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/vast-operator /usr/local/bin/vast-operator
USER nonroot
ENTRYPOINT ["/usr/local/bin/vast-operator"]
CMD ["run"]
