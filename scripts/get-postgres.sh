#!/usr/bin/env bash
# Make a PostgreSQL server binary available for the shared-study tests (tests/search), idempotently:
#   1. initdb/pg_ctl already on PATH or under /usr/lib/postgresql/*/bin -> nothing to do;
#   2. apt is there (and we are root) -> Debian package postgresql (the server is not started here;
#      the tests start their own on loopback in a temporary directory and stop it);
#   3. otherwise a clear message: the PostgreSQL tests will skip, saying why.
set -euo pipefail
have_server() {
  command -v pg_ctl >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null 2>&1
}
if have_server; then
  exit 0
fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "PostgreSQL: installing Debian package postgresql ..."
  if (apt-get install -y -qq postgresql >/dev/null 2>&1 || \
      (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq postgresql >/dev/null 2>&1)) && have_server; then
    exit 0
  fi
fi
echo "PostgreSQL: no server binary and no way to install one (needs apt-get as root);" \
     "the shared-study tests will skip." >&2
exit 0
