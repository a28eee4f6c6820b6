#!/usr/bin/env bash
# Start (or stop) every server ConflictDesk needs, on this machine, no Docker:
# PostgreSQL and Redis from Debian's packages, N EHRbase sites and HAPI FHIR
# from Maven Central. Idempotent; a second start reuses cached downloads.
# Usage: deploy/services.sh start [N_SITES] | stop | status
source "$(dirname "$0")/common.sh"
HERE="$(dirname "$0")"
N_SITES="${2:-${CONFLICTDESK_SITES:-2}}"

start() {
  local t0; t0=$(date +%s)
  log "== PostgreSQL";  "$HERE/postgres.sh" start
  log "== Redis";       "$HERE/redis.sh" start
  # The two JVM servers build and boot in parallel: on 2 cores this is
  # faster than one after the other because much of the time is I/O.
  log "== EHRbase x$N_SITES and HAPI FHIR (in parallel)"
  "$HERE/ehrbase.sh" start "$N_SITES" & local ehr=$!
  "$HERE/hapi-fhir.sh" start & local hapi=$!
  local rc=0
  wait "$ehr" || rc=$?
  wait "$hapi" || rc=$?
  [ "$rc" -eq 0 ] || die "a server failed to start (logs in $RUN_DIR)"
  log "all services up in $(( $(date +%s) - t0 )) s"
}

stop() {
  "$HERE/hapi-fhir.sh" stop || true
  "$HERE/ehrbase.sh" stop || true
  "$HERE/redis.sh" stop || true
  "$HERE/postgres.sh" stop || true
}

status() {
  "$HERE/postgres.sh" status || true
  "$HERE/redis.sh" status || true
  "$HERE/ehrbase.sh" status || true
  "$HERE/hapi-fhir.sh" status || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: $0 start [N_SITES] | stop | status" ;;
esac
