#!/bin/sh
# RadScribe container entrypoint (docker/Dockerfile, docker/Dockerfile.cuda, deploy/k8s).
#   entrypoint.sh [serve]        check the environment, apply migrations, then exec the gateway
#   entrypoint.sh <command> ...  any other radscribe command (audit verify, token create, ...)
# It runs the same outside Docker (test/integration/docker-entrypoint.int.test.ts), with
# RADSCRIBE_HOME pointing at a checkout.
#
# Secrets may come as files (Kubernetes Secret volumes, Docker secrets): VAR_FILE=/path sets VAR
# to the file's content for DATABASE_URL and every RADSCRIBE_*_PASSWORD / RADSCRIBE_*_TOKEN.
set -eu

RADSCRIBE_HOME=${RADSCRIBE_HOME:-$(cd "$(dirname "$0")/.." && pwd)}
RADSCRIBE_CONFIG=${RADSCRIBE_CONFIG:-/etc/radscribe/radscribe.yaml}
BIN="$RADSCRIBE_HOME/bin/radscribe"

# The gateway refuses RADSCRIBE_* variables that name no configuration key, so this script's own
# are kept in shell variables and removed from the environment before radscribe runs.
home=$RADSCRIBE_HOME
config=$RADSCRIBE_CONFIG
allow_embedded=${RADSCRIBE_ALLOW_EMBEDDED_DB:-}
unset RADSCRIBE_HOME RADSCRIBE_CONFIG RADSCRIBE_ALLOW_EMBEDDED_DB

log() { printf 'radscribe-entrypoint: %s\n' "$*" >&2; }
problems=0
problem() { log "$*"; problems=$((problems + 1)); }

# VAR_FILE -> VAR (one trailing newline dropped, as Secret files often end with one).
for pair in $(env | sed -n 's/^\(DATABASE_URL_FILE\|RADSCRIBE_[A-Z0-9_]*_\(PASSWORD\|TOKEN\)_FILE\)=.*/\1/p'); do
  var=${pair%_FILE}
  eval "file=\${$pair}"
  eval "already=\${$var:-}"
  if [ -n "$already" ]; then problem "$var and $pair are both set; set one"; continue; fi
  if [ ! -r "$file" ]; then problem "$pair: cannot read $file"; continue; fi
  value=$(cat "$file")
  export "$var=$value"
  unset "$pair"
done

cmd=${1:-serve}
[ $# -gt 0 ] && shift

if [ "$cmd" != serve ]; then
  exec "$BIN" "$cmd" "$@"
fi

# --- checks before serving: report every problem, then stop (exit 64, EX_USAGE of sysexits.h)
[ -x "$BIN" ] || problem "RADSCRIBE_HOME=$home has no bin/radscribe"
[ -f "$home/dist/src/cli.js" ] || problem "$home/dist/src/cli.js missing (npm run build)"
if [ ! -r "$config" ]; then
  problem "RADSCRIBE_CONFIG=$config is not a readable file"
fi
if [ -z "${DATABASE_URL:-}" ]; then
  # The embedded database (PGlite) serves one process: replicas need one PostgreSQL server.
  if [ "$allow_embedded" != 1 ]; then
    problem "DATABASE_URL is not set (a PostgreSQL server; RADSCRIBE_ALLOW_EMBEDDED_DB=1 for a single embedded instance)"
  fi
else
  case $DATABASE_URL in
    postgres://* | postgresql://*) ;;
    *) problem "DATABASE_URL must start with postgresql:// (got scheme '${DATABASE_URL%%:*}')" ;;
  esac
fi
if [ -n "${RADSCRIBE_DATA_DIR:-}" ]; then
  if [ ! -d "$RADSCRIBE_DATA_DIR" ]; then
    problem "RADSCRIBE_DATA_DIR=$RADSCRIBE_DATA_DIR does not exist"
  elif [ ! -w "$RADSCRIBE_DATA_DIR" ]; then
    problem "RADSCRIBE_DATA_DIR=$RADSCRIBE_DATA_DIR is not writable by uid $(id -u)"
  fi
fi
if [ "$problems" -gt 0 ]; then
  log "$problems problem(s); not starting"
  exit 64
fi

# Migrations take an advisory lock (src/db/migrate.ts): replicas starting together apply them once.
"$BIN" migrate --config "$config" >&2

# exec: the gateway replaces this shell, so SIGTERM/SIGINT reach it directly (PID 1 in the
# container is tini, which forwards them and reaps the inference child if the gateway dies).
exec "$BIN" serve --config "$config" "$@"
