#!/usr/bin/env bash
# podman with this project's settings (containers.conf beside this file): `devtools/images/podman.sh ARGS`.
set -euo pipefail
export CONTAINERS_CONF="$(cd "$(dirname "$0")" && pwd)/containers.conf"
exec podman "$@"
