#!/usr/bin/env bash
# PostgreSQL from Debian's packages: install if missing, start the cluster if it
# is not running (remembering that we started it), create the app database.
# Usage: deploy/postgres.sh start|stop|status
source "$(dirname "$0")/common.sh"

PG_VERSION_DIR() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1; }

start() {
  apt_install postgresql postgresql-contrib
  local ver; ver=$(basename "$(dirname "$(PG_VERSION_DIR)")")
  if ! pg_lsclusters -h | awk '{print $4}' | grep -q online; then
    log "starting PostgreSQL $ver"
    pg_ctlcluster "$ver" main start
    # pg_ctlcluster daemonises; record the postmaster pid so stop is ours.
    head -n1 "/var/lib/postgresql/$ver/main/postmaster.pid" > "$RUN_DIR/postgres.pid"
  fi
  for i in $(seq 1 30); do runuser -u postgres -- pg_isready -q -p "$PG_PORT" && break; sleep 1; done
  runuser -u postgres -- pg_isready -q -p "$PG_PORT" || die "PostgreSQL not ready"
  # max_connections: 2 EHRbase + HAPI + Django + Celery pools need more than 100.
  if [ "$(psql_super -d postgres -tAc 'SHOW max_connections')" -lt 300 ]; then
    psql_super -d postgres -c "ALTER SYSTEM SET max_connections = 400"
    log "raising max_connections (restart)"
    pg_ctlcluster "$ver" main restart
    head -n1 "/var/lib/postgresql/$ver/main/postmaster.pid" > "$RUN_DIR/postgres.pid"
  fi
  # deploy/sql/ is shared with the postgres container (deploy/docker-compose.yml).
  psql_super -d postgres -v role="${CONFLICTDESK_DB_USER:-conflictdesk}" -v pass="${CONFLICTDESK_DB_PASSWORD:-conflictdesk}" <"$REPO_DIR/deploy/sql/role.sql"
  psql_super -d postgres -v db="${CONFLICTDESK_DB_NAME:-conflictdesk}" -v owner="${CONFLICTDESK_DB_USER:-conflictdesk}" <"$REPO_DIR/deploy/sql/database.sql"
  # Tests create their own database: the role needs CREATEDB.
  psql_super -d postgres -c "ALTER ROLE \"${CONFLICTDESK_DB_USER:-conflictdesk}\" CREATEDB"
  # The application role (README "Database roles"): owns nothing; each `migrate` grants it
  # INSERT and SELECT only on the audit tables (audit/db_roles.py). Development keeps running as
  # the owner above; tests/audit/test_db_roles.py connects as this one.
  psql_super -d postgres -v role="${CONFLICTDESK_DB_APP_ROLE:-conflictdesk_app}" -v pass="${CONFLICTDESK_DB_APP_PASSWORD:-conflictdesk_app}" <"$REPO_DIR/deploy/sql/role.sql"
  log "PostgreSQL ready on port $PG_PORT"
}

stop() {
  # Only stop the cluster if this project started it: its pid file says so even when the pid in it
  # is stale (a test restarted PostgreSQL, which then runs under a new pid).
  if [ -f "$RUN_DIR/postgres.pid" ]; then
    local ver; ver=$(basename "$(dirname "$(PG_VERSION_DIR)")")
    log "stopping PostgreSQL"
    pg_ctlcluster "$ver" main stop || true
    rm -f "$RUN_DIR/postgres.pid"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) runuser -u postgres -- pg_isready -p "$PG_PORT" ;;
  *) die "usage: $0 start|stop|status" ;;
esac
