#!/usr/bin/env bash
# Local stand-ins for the images the Dockerfile and docker-compose.yml name, made from Debian's packages, for a
# machine that can run dockerd but cannot pull from a registry (tests/test_docker.py uses them):
#   PREFIX/debian:bookworm       debootstrap --variant=minbase bookworm, `docker import`ed
#   PREFIX/python:3.11-bookworm  + the host's CPython 3.11 build         (scripts/docker/python.Dockerfile)
#   PREFIX/nginx:bookworm        + Debian's nginx                       (scripts/docker/nginx.Dockerfile)
#   PREFIX/postgres:15-bookworm  + Debian's postgresql-15               (scripts/docker/postgres.Dockerfile)
#   PREFIX/redis:7-bookworm      + Debian's redis-server                (scripts/docker/redis.Dockerfile)
# PREFIX is $WEB_BOT_BASE_PREFIX or web-bot-local. The Debian mirror is $DEBIAN_MIRROR or the one apt uses here.
# The host's extra CA certificates (/usr/local/share/ca-certificates) go into the images, so that pip and apt in
# a build trust what the host trusts (a TLS-inspecting proxy, say). Builds use the host's network.
# Idempotent: an image is kept while what makes it is unchanged (its label org.web-bot.base-inputs); --force
# rebuilds all. Needs root (debootstrap) and a running dockerd. Prints each step's seconds on stderr. Exits 3 when
# something it needs is missing (debootstrap, a CPython built from source), 1 when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX=${WEB_BOT_BASE_PREFIX:-web-bot-local}
SUITE=bookworm
FORCE=0
[ "${1:-}" = --force ] && FORCE=1

# The mirror apt is configured with (deb822 or one-line sources), else Debian's CDN.
apt_uri() {  # $1: a pattern the URI must match
  { cat /etc/apt/sources.list.d/*.sources | grep '^URIs:' | awk '{print $2}'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list | grep '^deb ' | awk '{for (i=2; i<=NF; i++) if ($i ~ /:\/\//) {print $i; break}}'
  } 2>/dev/null | grep -E "$1" | head -1 || true
}
MIRROR=${DEBIAN_MIRROR:-$(apt_uri '/debian/?$')}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=${DEBIAN_SECURITY_MIRROR:-$(apt_uri '/debian-security/?$')}
SECURITY=${SECURITY:-http://deb.debian.org/debian-security}

# The CPython that goes into the python stand-in: $WEB_BOT_BASE_PYTHON (an installation prefix), else the prefix of
# the python3.11 on PATH, which must be a build from source (pyenv's, say), not Debian's /usr.
PYTHON_PREFIX=${WEB_BOT_BASE_PYTHON:-$(python3.11 -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)}
if [ -z "$PYTHON_PREFIX" ] || [ "$PYTHON_PREFIX" = /usr ] || [ ! -x "$PYTHON_PREFIX/bin/python3.11" ]; then
  echo "docker-base: needs a CPython 3.11 built from source: set WEB_BOT_BASE_PYTHON to its prefix" >&2
  exit 3
fi

IMAGES=("$PREFIX/debian:$SUITE" "$PREFIX/python:3.11-bookworm" "$PREFIX/nginx:bookworm" \
        "$PREFIX/postgres:15-bookworm" "$PREFIX/redis:7-bookworm")

step() { local start=$SECONDS; "$@"; echo "docker-base: $(( SECONDS - start )) s: ${*:1:4}" >&2; }

make_debian() {
  local work rootfs
  work=$(mktemp -d /var/tmp/web-bot-base.XXXXXX)
  rootfs=$work/rootfs
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" RETURN
  # passwd: useradd, which the Dockerfile runs (python:*-slim has it; minbase does not).
  debootstrap --variant=minbase --include=ca-certificates,passwd "$SUITE" "$rootfs" "$MIRROR" >"$work/log" 2>&1 \
    || { tail -20 "$work/log" >&2; return 1; }
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  rm -f "$rootfs/etc/apt/sources.list"
  # As in Debian's own images: no daemons started by package scripts, no manuals or docs in later layers.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
    chroot "$rootfs" update-ca-certificates >"$work/log" 2>&1
  fi
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" --numeric-owner -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
    --change "LABEL org.web-bot.base-inputs=$INPUTS" - "$PREFIX/debian:$SUITE" >/dev/null
}

build() {  # $1: tag, $2: Dockerfile in scripts/docker (the current folder)
  docker build --quiet --network host --build-arg "BASE=$PREFIX/debian:$SUITE" \
    --label "org.web-bot.base-inputs=$INPUTS" -t "$1" -f "$2" . >/dev/null
}

make_python() {  # the host's CPython as python.tar in a context of its own
  local work
  work=$(mktemp -d /var/tmp/web-bot-python.XXXXXX)
  # shellcheck disable=SC2064  # expand $work now
  trap "rm -rf '$work'" RETURN
  tar -C "$PYTHON_PREFIX" -cf "$work/python.tar" --exclude='__pycache__' --exclude='lib/python3.11/site-packages/*' \
    --exclude='lib/python3.11/test' --exclude='lib/python3.11/idlelib' --exclude='lib/python3.11/tkinter' \
    --exclude='lib/python3.11/turtledemo' --exclude='lib/python3.11/lib-dynload/_tkinter.*' \
    --exclude='lib/python3.11/config-3.11-*/libpython3.11.a' \
    bin/python3.11 bin/python3.11-config include lib share
  docker build --quiet --network host --build-arg "BASE=$PREFIX/debian:$SUITE" --build-arg "PREFIX=$PYTHON_PREFIX" \
    --label "org.web-bot.base-inputs=$INPUTS" -t "$PREFIX/python:3.11-bookworm" \
    -f python.Dockerfile "$work" >/dev/null
}

# Each image is labelled with a hash of what makes it (for the others, the Debian image's id among it) and kept
# while that hash is the same: editing one Dockerfile rebuilds one image, and the project's image, which a test
# caches by its base's id, is not built again for nothing.
inputs() {  # what makes an image (function bodies, files, words) -> a short hash
  { for item in "$@"; do
      if declare -F "$item" >/dev/null; then declare -f "$item"; elif [ -f "$item" ]; then cat "$item"; else echo "$item"; fi
    done; } | sha256sum | cut -c1-16
}
current() {  # $1: image, $2: inputs hash; true when it exists and was made from those inputs
  [ "$FORCE" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "org.web-bot.base-inputs"}}' "$1" 2>/dev/null)" = "$2" ]
}

CA_FILES=(/usr/local/share/ca-certificates/*.crt)
INPUTS=$(inputs make_debian "$SUITE" "$MIRROR" "$SECURITY" "${CA_FILES[@]}")
if ! current "$PREFIX/debian:$SUITE" "$INPUTS"; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "docker-base: needs debootstrap (bash scripts/docker/engine.sh installs it)" >&2
    exit 3
  fi
  step make_debian
fi
DEBIAN_ID=$(docker image inspect -f '{{.Id}}' "$PREFIX/debian:$SUITE")
cd scripts/docker
INPUTS=$(inputs "$DEBIAN_ID" make_python python.Dockerfile "$("$PYTHON_PREFIX/bin/python3.11" -VV)" "$PYTHON_PREFIX")
current "$PREFIX/python:3.11-bookworm" "$INPUTS" || step make_python
INPUTS=$(inputs "$DEBIAN_ID" build nginx.Dockerfile)
current "$PREFIX/nginx:bookworm" "$INPUTS" || step build "$PREFIX/nginx:bookworm" nginx.Dockerfile
INPUTS=$(inputs "$DEBIAN_ID" build postgres.Dockerfile postgres-entrypoint.sh)
current "$PREFIX/postgres:15-bookworm" "$INPUTS" || step build "$PREFIX/postgres:15-bookworm" postgres.Dockerfile
INPUTS=$(inputs "$DEBIAN_ID" build redis.Dockerfile redis-entrypoint.sh)
current "$PREFIX/redis:7-bookworm" "$INPUTS" || step build "$PREFIX/redis:7-bookworm" redis.Dockerfile
echo "docker-base: ready: ${IMAGES[*]}"
