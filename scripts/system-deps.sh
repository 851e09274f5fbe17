#!/usr/bin/env bash
# Debian packages the test suite needs beyond pip: headless Chromium for the browser tests, nginx and a private
# redis-server for the scale-out tests, openssl for their TLS certificate, curl for the README's command, Festival
# and its Russian voice for the Russian speech the speech-to-text tests generate.
# Idempotent: installs only what is missing. Needs root (CI and the development machines run as root).
set -euo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v text2wave >/dev/null 2>&1 || missing+=(festival)
[ -d /usr/share/festival/voices/russian/msu_ru_nsh_clunits ] || missing+=(festvox-ru)
fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: please install: ${missing[*]} (needs root)" >&2
  exit 1
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
