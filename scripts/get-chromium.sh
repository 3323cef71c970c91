#!/usr/bin/env bash
# Headless Chromium for the HTML report test: Debian package `chromium`, installed when missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing Debian package chromium (headless browser for the HTML report test) ..."
  apt-get install -y -qq chromium >/dev/null 2>&1 || \
    (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1)
  command -v chromium >/dev/null 2>&1 && exit 0
fi
echo "error: chromium is missing; install it (Debian/Ubuntu: apt-get install chromium)." >&2
exit 1
