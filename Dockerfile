# Container image of vast-operator. It packages a binary built beforehand by cargo, as
# cargo-dist, goreleaser and ko do: `make image` (hack/image.sh) builds it with
# `cargo build --profile dist` and passes a build context holding only that binary.
#
#   hack/image.sh builds:  podman build -f Dockerfile --build-arg BASE=... target/image-context
#
# BASE is distroless cc-debian12 (glibc, libgcc, CA certificates, tzdata, user nonroot =
# 65532, no shell). Where no registry is reachable, hack/image-base.sh makes an image
# with the part of it the operator needs from Debian's packages, and `make image` uses it.
ARG BASE=gcr.io/distroless/cc-debian12:nonroot
FROM ${BASE}
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="vast-operator" \
      org.opencontainers.image.description="Mirrors Vast.ai serverless workergroups into Kubernetes WorkerGroup resources" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/vast-operator/vast-operator"
COPY --chmod=0555 vast-operator /usr/local/bin/vast-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/vast-operator"]
CMD ["run"]
