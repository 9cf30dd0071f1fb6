#!/usr/bin/env bash
# Entrypoint of the PostgreSQL stand-in (see Containerfile). A small re-implementation of
# the interface of the official image's docker-entrypoint.sh, not a copy of it:
#
#   POSTGRES_PASSWORD          superuser password; required unless
#                              POSTGRES_HOST_AUTH_METHOD=trust
#   POSTGRES_USER              superuser name (default: postgres)
#   POSTGRES_DB                database created at initialisation (default: $POSTGRES_USER)
#   POSTGRES_INITDB_ARGS       extra initdb arguments
#   POSTGRES_HOST_AUTH_METHOD  auth for `host all all all` (default: scram-sha-256)
#   <VAR>_FILE                 read the four POSTGRES_* values above from a file (secrets)
#   PGDATA                     data directory (image default: /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz   run once, after initialisation
#
# As in the official image: started as root it fixes ownership of PGDATA and re-executes
# itself as postgres; the database is initialised only when PGDATA is empty; connections
# from inside the container (socket, localhost) are trusted, all others need the password;
# `docker run IMAGE -c key=value` passes server options; any other command is executed as is.
set -Eeuo pipefail

: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
SOCKET_DIR=/var/run/postgresql

log() { printf 'docker-entrypoint: %s\n' "$*" >&2; }

file_env() {  # file_env VAR [DEFAULT]: export VAR from $VAR, the file named by $VAR_FILE, or DEFAULT
  local var=$1 file_var=${1}_FILE value=${2:-}
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    log "error: both $var and $file_var are set (they are exclusive)"
    exit 1
  fi
  if [ -n "${!var:-}" ]; then
    value=${!var}
  elif [ -n "${!file_var:-}" ]; then
    value=$(<"${!file_var}")
  fi
  export "$var=$value"
  unset "$file_var"
}

psql_init() {  # psql as the superuser over the socket of the temporary server
  psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password -h "$SOCKET_DIR" \
    --username "$POSTGRES_USER" "$@"
}

run_initdb_scripts() {
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case $f in
      *.sh)
        if [ -x "$f" ]; then
          log "running $f"
          "$f"
        else
          log "sourcing $f"
          # shellcheck source=/dev/null
          . "$f"
        fi
        ;;
      *.sql) log "running $f"; psql_init --dbname "$POSTGRES_DB" -f "$f" ;;
      *.sql.gz) log "running $f"; gunzip -c "$f" | psql_init --dbname "$POSTGRES_DB" ;;
      *) log "ignoring $f" ;;
    esac
  done
}

init_database() {
  local auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
  if [ -z "$POSTGRES_PASSWORD" ] && [ "$auth" != trust ]; then
    log "error: database is uninitialized and superuser password is not specified."
    log "  Set POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), or POSTGRES_HOST_AUTH_METHOD=trust"
    log "  to allow all connections without a password (not recommended)."
    exit 1
  fi

  # eval like the official image, so quoting inside POSTGRES_INITDB_ARGS is honoured
  eval 'initdb --username="$POSTGRES_USER" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
  printf '\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"

  # temporary server, reachable only through the Unix socket while we set things up
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -p 5432" start
  if [ "$POSTGRES_DB" != postgres ]; then
    psql_init --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  run_initdb_scripts
  pg_ctl -D "$PGDATA" -w -m fast stop
  log "PostgreSQL init process complete; ready for start up."
}

# `docker run IMAGE -c key=value` means `postgres -c key=value`
if [ "${1:0:1}" = - ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ]; then
  if [ "$(id -u)" = 0 ]; then
    # a fresh volume or bind mount is owned by root: hand it to postgres, then drop root
    mkdir -p "$PGDATA" "$SOCKET_DIR"
    find "$PGDATA" "$SOCKET_DIR" \! -user postgres -exec chown postgres:postgres {} +
    chmod 0700 "$PGDATA"
    exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    init_database
  fi
fi

exec "$@"
