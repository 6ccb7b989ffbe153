#!/usr/bin/env bash
# `make image`: builds the operator with cargo (profile dist, target/dist/vast-operator)
# and packages it with the Dockerfile, through hack/container.sh (CONTAINER_ENGINE,
# podman by default). The last line printed is `image: <IMAGE>`.
#
#   IMAGE        the name to tag (default localhost/vast-operator:dev)
#   IMAGE_BASE   the base image: gcr.io/distroless/cc-debian12:nonroot (the default),
#                `local` for the one hack/image-base.sh makes from Debian's packages, or
#                any other name. When the default cannot be found or pulled (no registry
#                reachable), the local one is made and used instead, saying so.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
engine="$root/hack/container.sh"
image=${IMAGE:-localhost/vast-operator:dev}
distroless=gcr.io/distroless/cc-debian12:nonroot
local_base=localhost/vast-operator-base:cc-debian12
base=${IMAGE_BASE:-$distroless}

# The binary is the host's own build, so with the Debian 12 bases (distroless
# cc-debian12, or the local one) the host must make one they can run: Linux with a glibc
# no newer than theirs (2.36). Any base: the image's --version runs below.
if [[ $base == "$distroless" || $base == local ]]; then
  if [[ $(uname -s) != Linux ]]; then
    echo "image: the binary is built on this machine and must be a Linux one for $base; this is $(uname -s)" >&2
    exit 1
  fi
  glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}' || true)
  if [[ -z $glibc ]] || [[ $(printf '%s\n2.36\n' "$glibc" | sort -V | tail -n 1) != 2.36 ]]; then
    echo "image: this machine's glibc is ${glibc:-not glibc}; a binary built here may need symbols the base's glibc 2.36 lacks: build on Debian 12 (bookworm) or older" >&2
    exit 1
  fi
fi

"$engine" install

cargo build --locked --profile dist -p vast-operator
# The image's binary carries no failpoint (the `failpoints` feature is for make chaos).
if grep -a -q -E 'crash-after-(service|slices|status)|skip-stale-rule|watch-hold|watch-relist' target/dist/vast-operator; then
  echo "image: target/dist/vast-operator carries failpoints (built with --features failpoints?)" >&2
  exit 1
fi

if [[ $base == local ]]; then
  hack/image-base.sh "$local_base"
  base=$local_base
elif ! "$engine" image inspect "$base" >/dev/null 2>&1; then
  echo "[image] pulling $base" >&2
  if ! "$engine" pull -q "$base" >/dev/null 2>"$root/target/image-pull.log"; then
    if [[ -n ${IMAGE_BASE:-} ]]; then
      echo "image: cannot pull IMAGE_BASE=$base:" >&2
      cat "$root/target/image-pull.log" >&2
      exit 1
    fi
    echo "[image] $base cannot be pulled here ($(tail -n 1 "$root/target/image-pull.log" | cut -c1-160)); using what the operator needs of it, made from Debian's packages: $local_base (hack/image-base.sh)" >&2
    hack/image-base.sh "$local_base"
    base=$local_base
  fi
fi

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
# A tree with uncommitted changes is not that commit.
if [[ $revision != unknown && -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
  revision="$revision-dirty"
fi
# The build context is the binary alone: nothing else of the tree is sent or can be
# copied in.
context="$root/target/image-context"
rm -rf "$context"
mkdir -p "$context"
cp target/dist/vast-operator "$context/vast-operator"
# --no-cache: buildah's layer cache keys a LABEL step by its text, not by the build
# arguments in it, so a new revision over the same binary got the old image and labels
# (seen in a clean-clone CI run). The build is one COPY: seconds either way.
"$engine" build --quiet --no-cache -f Dockerfile \
  --build-arg "BASE=$base" --build-arg "VERSION=$version" --build-arg "REVISION=$revision" \
  -t "$image" "$context" >/dev/null
# The image must start: a binary the base cannot run fails here, not in a pod.
if ! out=$("$engine" run --rm --network none "$image" --version 2>&1); then
  echo "image: $image was built but its binary does not run on the base $base:" >&2
  echo "$out" >&2
  exit 1
fi
size=$("$engine" image inspect --format '{{.Size}}' "$image")
echo "[image] $image on $base: $((size / 1000000)) MB, version $version, revision $revision" >&2
echo "image: $image"
