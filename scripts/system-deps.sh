#!/usr/bin/env bash
# Debian packages beyond pip.
#   scripts/system-deps.sh          what the test suite needs: headless Chromium for the browser tests, nginx and a
#                                   private redis-server for the scale-out tests, openssl for their TLS certificate,
#                                   curl for the README's command, and the voices below.
#   scripts/system-deps.sh voices   what the server needs to speak every language it ships a voice for (`make run`):
#                                   Festival and its Russian voice (tts.voices). Without them the server still runs,
#                                   and answers Russian in text with a notice, so this mode warns instead of failing.
# Idempotent: installs only what is missing. Installing needs root (CI and the development machines run as root).
set -euo pipefail
mode="${1:-all}"
missing=()
if [ "$mode" = all ]; then
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  fc-list 2>/dev/null | grep -qi dejavu || missing+=(fonts-dejavu-core)
fi
command -v text2wave >/dev/null 2>&1 || missing+=(festival)
[ -d /usr/share/festival/voices/russian/msu_ru_nsh_clunits ] || missing+=(festvox-ru)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
fail() {
  if [ "$mode" = voices ]; then
    echo "system-deps: $1; Russian replies will be shown, not spoken (apt-get install ${missing[*]} to speak them)" >&2
    exit 0
  fi
  echo "system-deps: $1" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || fail "please install: ${missing[*]} (needs root)"
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || fail "apt-get update failed"
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || fail "could not install ${missing[*]}"
