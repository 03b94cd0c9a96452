#!/usr/bin/env bash
# The images' local base, built once and kept (podman's image store): Debian bookworm with
# its Python 3.11 and venv, made with debootstrap from Debian's packages (no public registry
# is reachable here). Named for what it is, never as the public python image.
#   devtools/images/base.sh [IMAGE]     (default localhost/debian-python:bookworm)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
image="${1:-localhost/debian-python:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if "$here/podman.sh" image exists "$image"; then
    echo "base image $image: present"
    exit 0
fi
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
echo "base image $image: debootstrap bookworm into $root (about a minute)"
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" "$mirror" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$mirror" "$mirror" > "$root/etc/apt/sources.list"
tar --numeric-owner -C "$root" -c . | "$here/podman.sh" import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base image $image: built"
