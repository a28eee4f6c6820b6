#!/usr/bin/env bash
# The one-command demo: every server, the engine (Celery worker + beat), the
# desk, seeded synthetic oncology data, a trickle of new events, a few genuine
# conflicts and dead letters. The servers run with pid files in .run/, the engine
# and desk under supervisord (deploy/supervisord.conf); `make stop` stops it all.
# Usage: deploy/demo.sh start [N_SITES] | stop | status | reset
source "$(dirname "$0")/common.sh"
HERE="$(dirname "$0")"
source "$HERE/commands.env"
N_SITES="${2:-${CONFLICTDESK_SITES:-5}}"
PATIENTS="${CONFLICTDESK_DEMO_PATIENTS:-8}"
PY="$REPO_DIR/.venv/bin/python"
WEB_PORT="${CONFLICTDESK_WEB_PORT:-8000}"
# A demo is a development run: DEBUG on, and demo mode on so its accounts may skip TOTP
# (the desk honours that only when both are on; production has neither).
export DJANGO_DEBUG=1
export CONFLICTDESK_DEMO_MODE=1
# Demo-only credentials: a fresh random password per start unless one is given; printed below.
export CONFLICTDESK_DEMO_PASSWORD="${CONFLICTDESK_DEMO_PASSWORD:-$(python3 -c 'import secrets; print(secrets.token_urlsafe(12))')}"
# Detection runs in its own loop process (lowest latency); beat keeps sweeps and anchors.
export CONFLICTDESK_POLL_LOOP=1
# The demo's sites and its HAPI keep their own databases: a machine that also ran the tests or
# the benchmarks holds thousands of their compositions in ehrbase_site{i} and their resources in
# hapi, which the demo would otherwise sync (and replay back to its sites) before its own.
export EHRBASE_DB_PREFIX="${EHRBASE_DB_PREFIX:-ehrbase_demo_site}"
export HAPI_DB_NAME="${HAPI_DB_NAME:-hapi_demo}"
export CONFLICTDESK_STAFF_EMAILS="${CONFLICTDESK_STAFF_EMAILS:-steward@demo.conflictdesk.local}"
# Staff hear of dead letters and conflicts in a digest only; in the demo every 5 minutes, not hourly.
export CONFLICTDESK_DIGEST_MINUTES="${CONFLICTDESK_DIGEST_MINUTES:-5}"
# The demo's servers demand credentials (basic auth), generated once into .run/ by the start
# scripts (or given as EHRBASE_CREDENTIALS / HAPI_CREDENTIALS); the engine reads them from the
# environment only: each site's credentials_ref and CONFLICTDESK_FHIR_CREDENTIALS.
export EHRBASE_AUTH="${EHRBASE_AUTH:-basic}" HAPI_AUTH="${HAPI_AUTH:-basic}"
export CONFLICTDESK_SITE_URLS="$(for i in $(seq 1 "$N_SITES"); do printf 'http://127.0.0.1:%d/ehrbase/rest/openehr/v1,' $((8100+i)); done)"

# bg NAME CMD...: start a long-running process of ours with a pid file and log.
bg() {
  local name="$1"; shift
  if pid_alive "$name"; then log "$name already running (pid $(cat "$RUN_DIR/$name.pid"))"; return 0; fi
  ( cd "$REPO_DIR" && exec setsid "$@" </dev/null >>"$RUN_DIR/$name.log" 2>&1 ) &
  echo $! >"$RUN_DIR/$name.pid"
  log "$name started (pid $!, log $RUN_DIR/$name.log)"
}

# server_credentials: the engine's (and demo_seed's) view of the credentials the servers were started with.
server_credentials() {
  local i site
  if [ "$EHRBASE_AUTH" = basic ]; then
    site="${EHRBASE_CREDENTIALS:-$(cat "$RUN_DIR/ehrbase-credentials")}"
    for i in $(seq 1 "$N_SITES"); do export "CONFLICTDESK_SITE_CREDENTIALS_SITE$i=$site"; done
  fi
  if [ "$HAPI_AUTH" = basic ]; then
    export CONFLICTDESK_FHIR_CREDENTIALS="${HAPI_CREDENTIALS:-$(cat "$RUN_DIR/hapi-credentials")}"
  fi
}

# The worker, beat, poll loop and web run under supervisord (deploy/supervisord.conf), which starts
# again whichever of them dies; its socket and logs are in $RUN_DIR. The rest of the environment
# (database, broker, credentials) is what this script exported.
SUPERVISOR=(-c "$REPO_DIR/deploy/supervisord.conf")
export RUN_DIR REPO_DIR WEB_PORT CONFLICTDESK_WORKER_CMD CONFLICTDESK_BEAT_CMD VENV_BIN="$REPO_DIR/.venv/bin" \
  CONFLICTDESK_POLL_QUEUE="${CONFLICTDESK_POLL_QUEUE:-sync.poll}"
supervised() { [ -S "$RUN_DIR/supervisor.sock" ] && "$VENV_BIN/supervisorctl" "${SUPERVISOR[@]}" pid >/dev/null 2>&1; }

supervise() {
  if supervised; then
    log "supervisord already running: starting what is stopped"
    "$VENV_BIN/supervisorctl" "${SUPERVISOR[@]}" start all >/dev/null || true
  else
    (cd "$REPO_DIR" && "$VENV_BIN/supervisord" "${SUPERVISOR[@]}")
    log "supervisord started: celery-worker, celery-poll-worker, celery-beat, poll-loop, web (logs in $RUN_DIR)"
  fi
}

start() {
  local t0=$SECONDS
  log "== servers ($N_SITES EHRbase sites, HAPI FHIR, PostgreSQL, Redis)"
  "$HERE/services.sh" start "$N_SITES"
  server_credentials
  log "== database and demo wiring"
  "$PY" "$REPO_DIR/manage.py" migrate --noinput >/dev/null
  "$PY" "$REPO_DIR/manage.py" demo_setup --sites "$N_SITES" --poll-interval 1
  log "== engine and desk"
  supervise
  wait_http web "http://127.0.0.1:$WEB_PORT/healthz" 60
  log "== seeding $PATIENTS synthetic patients per site and 3 dead letters (one per rule; a re-run adds none)"
  "$PY" "$REPO_DIR/manage.py" demo_seed --sites "$N_SITES" --patients-per-site "$PATIENTS" --seed 2026 \
    --invalid 3 || log "seeding finished with warnings (see above)"
  # Conflicts need the first sync of their records: staged in the background
  # while the engine works through the seed, then a trickle of new events.
  bg trickle "$PY" manage.py demo_seed --sites "$N_SITES" --patients-per-site "$PATIENTS" --seed 2026 \
    --conflicts 3 --trickle 0.5
  cat <<MSG

ConflictDesk demo is up in $(( SECONDS - t0 )) s:  http://127.0.0.1:$WEB_PORT/
Demo logins (password: $CONFLICTDESK_DEMO_PASSWORD):
  clinician@demo.conflictdesk.local  clinician reviewer: decides conflicts
  steward@demo.conflictdesk.local    data steward: works dead letters
  auditor@demo.conflictdesk.local    auditor: reads the audit trail
  admin@demo.conflictdesk.local      admin: sites and users (also /admin/)
Central FHIR: http://127.0.0.1:8090/fhir   Sites: http://127.0.0.1:8101..$((8100+N_SITES))/ehrbase
Server credentials (user:password, basic auth: EHRBASE_AUTH=$EHRBASE_AUTH, HAPI_AUTH=$HAPI_AUTH):
  $RUN_DIR/ehrbase-credentials  $RUN_DIR/ehrbase-admin-credentials  $RUN_DIR/hapi-credentials
Conflicts are staged in the background once their records first sync (log: .run/trickle.log).
Stop everything with: make stop
MSG
}

stop() {
  stop_pid trickle
  if supervised; then log "stopping the supervised processes"; "$VENV_BIN/supervisorctl" "${SUPERVISOR[@]}" shutdown >/dev/null; fi
  for name in web poll-loop celery-beat celery-worker; do stop_pid "$name"; done  # an older demo's, unsupervised
}

# reset: stop it all, drop the demo's databases (its sites', its HAPI's, the engine's) and empty the
# broker, so that the next start seeds from scratch: seeding is idempotent by composition uid, so a
# changed generator never replaces the stories an earlier start committed.  Demo data only: the test
# and benchmark servers keep their own databases (ehrbase_site*, hapi, test_*).
reset() {
  stop
  "$HERE/services.sh" stop  # EHRbase and HAPI hold connections to the databases dropped here
  "$HERE/postgres.sh" start
  "$HERE/redis.sh" start
  local db
  for db in $(psql_super -d postgres -tA -v prefix="$EHRBASE_DB_PREFIX" -v hapi="$HAPI_DB_NAME" \
      -v engine="${CONFLICTDESK_DB_NAME:-conflictdesk}" <<'SQL'
SELECT datname FROM pg_database
 WHERE starts_with(datname, :'prefix') OR datname IN (:'hapi', :'engine');
SQL
  ); do
    log "dropping database $db"
    psql_super -d postgres -c "DROP DATABASE \"$db\" WITH (FORCE)"
  done
  redis-cli -p "${CONFLICTDESK_REDIS_PORT:-6379}" -n 0 flushdb >/dev/null  # queued messages of dropped runs
  "$HERE/services.sh" stop
  log "demo data dropped: the next 'make demo' seeds afresh"
}

# status: every demo process with its state (supervisorctl), and the trickle.
status() {
  if supervised; then "$VENV_BIN/supervisorctl" "${SUPERVISOR[@]}" status || true
  else echo "engine and desk: not running (no supervisord)"; fi
  if pid_alive trickle; then echo "trickle          RUNNING   pid $(cat "$RUN_DIR/trickle.pid")"
  else echo "trickle          STOPPED"; fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  reset) reset ;;
  *) die "usage: $0 start [N_SITES] | stop | status | reset" ;;
esac
