#!/usr/bin/env bash
# Makes, from Debian's packages, a base image with the part of distroless
# `gcr.io/distroless/cc-debian12:nonroot` that the operator needs, for machines that
# reach no container registry (this project's CI): glibc and libgcc (not cc's libssl3,
# openssl, libstdc++6 and libgomp1: the binary links none of them), CA certificates, tzdata, netbase's
# /etc/services and /etc/protocols, an /etc/passwd and /etc/group with root, nobody and
# nonroot (65532), /tmp, /home/nonroot, the packages' copyright files, and their control
# records in /var/lib/dpkg/status.d/ (where image scanners look, as in distroless).
# No shell and no other program: the packages' scripts and manuals are left out.
#
#   hack/image-base.sh [NAME]     default NAME: localhost/vast-operator-base:cc-debian12
#
# Packages come with `apt-get download` from the machine's own Debian sources and are
# unpacked with `dpkg-deb -x`; the root is packed by python3 into a tar with fixed
# owners, modes and times (the same packages give the same layer) and imported with
# `podman import` (through hack/container.sh). The image is kept while its label lists
# the package versions apt would download now and this script's hash; otherwise it is
# made again.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-localhost/vast-operator-base:cc-debian12}
engine="$root/hack/container.sh"
packages=(libc6 libgcc-s1 ca-certificates tzdata netbase)
label=ai.vast.operator.base-packages

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null \
  || { echo "image-base: apt-get and dpkg-deb are needed (a Debian machine)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "image-base: python3 is needed (apt-get install python3)" >&2; exit 1; }
. /etc/os-release
if [[ ${ID:-} != debian || ${VERSION_ID:-} != 12 ]]; then
  echo "image-base: the packages must be Debian 12's (bookworm), as cc-debian12's are; this machine is ${PRETTY_NAME:-unknown}" >&2
  exit 1
fi

candidates() {
  apt-cache show --no-all-versions "${packages[@]}" 2>/dev/null \
    | awk '/^Package:/ {p = $2} /^Version:/ {printf "%s=%s ", p, $2}' | sed 's/ $//'
}
apt_update() {
  [[ $(id -u) -eq 0 ]] || { echo "image-base: $1; run apt-get update as root" >&2; exit 1; }
  echo "[image-base] apt-get update ($1)" >&2
  apt-get update -qq
}
want=$(candidates || true)
if [[ $(wc -w <<<"$want") -ne ${#packages[@]} ]]; then
  apt_update "apt knows no candidate for some of ${packages[*]}"
  want=$(candidates || true)
  [[ $(wc -w <<<"$want") -eq ${#packages[@]} ]] || { echo "image-base: apt offers no ${packages[*]} even after an update" >&2; exit 1; }
fi
# This script's own hash too: a change to how the base is made makes it again.
want="$want recipe=$(sha256sum "$0" | cut -c1-16)"
have=$("$engine" image inspect --format "{{index .Config.Labels \"$label\"}}" "$name" 2>/dev/null || true)
if [[ $have == "$want" ]]; then
  echo "[image-base] $name is up to date ($want)" >&2
  exit 0
fi

work="$root/target/image-base"
rm -rf "$work"
mkdir -p "$work/debs" "$work/root"
# apt drops to its own user to download and warns when that user cannot write here.
download() {
  local rc=0
  (cd "$work/debs" && apt-get download -q "${packages[@]}") >"$work/download.log" 2>&1 || rc=$?
  grep -v 'unsandboxed as root' "$work/download.log" >&2 || true
  return "$rc"
}
if ! download; then
  # Lists older than the mirror: the versions they name are gone (404).
  apt_update "apt-get download failed"
  want=$(candidates || true)
  [[ $(wc -w <<<"$want") -eq ${#packages[@]} ]] || { echo "image-base: apt offers no ${packages[*]} after an update" >&2; exit 1; }
  want="$want recipe=$(sha256sum "$0" | cut -c1-16)"
  download || { echo "image-base: apt-get download ${packages[*]} failed (above)" >&2; exit 1; }
fi
for p in "${packages[@]}"; do
  compgen -G "$work/debs/${p}_*.deb" >/dev/null || { echo "image-base: $p was not downloaded" >&2; exit 1; }
done
status="$work/root/var/lib/dpkg/status.d"
mkdir -p "$status"
for deb in "$work"/debs/*.deb; do
  dpkg-deb -x "$deb" "$work/root"
  p=$(dpkg-deb -f "$deb" Package)
  dpkg-deb -f "$deb" >"$status/$p"
done
r="$work/root"
# What is not a library or data: programs, maintainer scripts' hooks, manuals, lintian.
rm -rf "$r/usr/sbin" "$r/usr/share/man" "$r/usr/share/lintian" "$r/usr/share/info" \
  "$r/etc/ca-certificates" "$r/etc/ld.so.conf.d"
find "$r/usr/share/doc" -type f ! -name copyright -delete
find "$r/usr/share/doc" -type l -delete
# The CA bundle update-ca-certificates would write (the packages' scripts never run).
mkdir -p "$r/etc/ssl/certs"
find "$r/usr/share/ca-certificates" -name '*.crt' -print0 | LC_ALL=C sort -z | xargs -0 cat >"$r/etc/ssl/certs/ca-certificates.crt"
[[ -s $r/etc/ssl/certs/ca-certificates.crt ]] || { echo "image-base: no CA certificates" >&2; exit 1; }
cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
EOF
printf 'hosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' >"$r/etc/nsswitch.conf"
cp /usr/lib/os-release "$r/etc/os-release"
mkdir -p "$r/tmp" "$r/root" "$r/home/nonroot"

python3 - "$r" "$work/base.tar" <<'EOF'
import os, sys, tarfile
root, out = sys.argv[1], sys.argv[2]
# Owners and modes as in distroless; every time 0, so equal inputs give an equal tar.
owned = {"home/nonroot": 65532}
modes = {"tmp": 0o1777, "root": 0o700, "home/nonroot": 0o700}
def entry(info):
    info.uid = info.gid = owned.get(info.name, 0)
    info.uname = info.gname = ""
    info.mtime = 0
    if info.name in modes:
        info.mode = modes[info.name]
    elif info.isdir():
        info.mode = 0o755
    elif info.isfile():
        info.mode = 0o755 if info.mode & 0o111 else 0o644
    return info
with tarfile.open(out, "w", format=tarfile.GNU_FORMAT) as tar:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for n in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, n)
            tar.add(path, arcname=os.path.relpath(path, root), recursive=False, filter=entry)
EOF

"$engine" import \
  --change 'USER 65532:65532' --change 'WORKDIR /home/nonroot' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  --change "LABEL $label=\"$want\"" \
  --message "the part of distroless cc-debian12:nonroot the operator needs, from Debian's packages ($want)" \
  "$work/base.tar" "$name" >/dev/null
echo "[image-base] made $name from $want ($(du -sk "$r" | cut -f1) KiB)" >&2
