#!/usr/bin/env bash
# A Docker engine from Debian's packages, for tests/test_docker.py on a machine without one: docker.io (dockerd,
# containerd, runc) and debootstrap from bookworm, and Compose v2 (bookworm has only v1, which cannot read
# docker-compose.yml's `name:`) from trixie's docker-compose package, unpacked as the docker CLI plugin
# /usr/local/lib/docker/cli-plugins/docker-compose (trixie's lists go to a private apt folder; nothing else from
# trixie is installed). Then starts dockerd unless one answers; its log goes to /var/log/dockerd.log.
# Idempotent; needs root.  Usage: bash scripts/docker/engine.sh [--no-start]
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  echo "engine: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PLUGIN=/usr/local/lib/docker/cli-plugins/docker-compose
if ! docker compose version >/dev/null 2>&1; then
  echo "engine: installing Compose v2 from trixie's docker-compose package"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
    >"$work/sources.list"
  apt_private=(-o "Dir::Etc::sourcelist=$work/sources.list" -o Dir::Etc::sourceparts=- \
    -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o Dir::State::status=/dev/null \
    -o APT::Sandbox::User=root)
  apt-get -qq "${apt_private[@]}" update
  (cd "$work" && apt-get -qq "${apt_private[@]}" download docker-compose)
  dpkg-deb -x "$work"/docker-compose_2*.deb "$work/root"
  install -D -m 755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGIN"
  docker compose version
fi

[ "${1:-}" = --no-start ] && exit 0
if docker info >/dev/null 2>&1; then
  exit 0
fi
echo "engine: starting dockerd (log: /var/log/dockerd.log)"
nohup dockerd >/var/log/dockerd.log 2>&1 &
for _ in $(seq 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
tail -20 /var/log/dockerd.log >&2
exit 1
