#!/usr/bin/env bash
# Runs the whole jest suite inside a private network namespace that has only a loopback interface.
# Why: Orthanc 1.10 (the PACS in the end-to-end tests) always binds 0.0.0.0 and has no bind-address
# option (reference/js-stack.md §5), so it must never run in the machine's own network namespace.
# Inside the namespace PostgreSQL is reached over its Unix socket, which is not namespaced; so
# DATABASE_URL must use a socket (postgresql://postgres@/radscribe_test?host=/var/run/postgresql).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${RADSCRIBE_IN_NETNS:-}" = 1 ]; then
  ip link set lo up 2>/dev/null || true
  exec jest "$@"
fi

case "${DATABASE_URL:-}" in
  *@127.0.0.1*|*@localhost*|*@\[::1\]*)
    echo "run-tests: DATABASE_URL points at TCP loopback, which the test network namespace cannot reach;" >&2
    echo "run-tests: use the server's Unix socket instead, e.g. postgresql://postgres@/radscribe_test?host=/var/run/postgresql" >&2
    exit 2 ;;
esac

if unshare --net true 2>/dev/null; then
  exec env RADSCRIBE_IN_NETNS=1 unshare --net -- bash "$0" "$@"
elif unshare --map-root-user --net true 2>/dev/null; then
  exec env RADSCRIBE_IN_NETNS=1 unshare --map-root-user --net -- bash "$0" "$@"
else
  # No namespace available (unprivileged container): run everything except what needs Orthanc.
  echo "run-tests: no private network namespace available; tests that need Orthanc will be skipped" >&2
  exec env RADSCRIBE_NO_NETNS=1 jest "$@"
fi
