# Shared helpers for the deploy scripts: sourced, never run.
# Every server we start is recorded in $RUN_DIR/<name>.pid so that `stop`
# only ever kills what we started (never by process name).
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${CONFLICTDESK_RUN_DIR:-$REPO_DIR/.run}"
CACHE_DIR="${CONFLICTDESK_CACHE_DIR:-$REPO_DIR/.cache}"
mkdir -p "$RUN_DIR" "$CACHE_DIR"

PG_HOST="${PGHOST:-127.0.0.1}"
PG_PORT="${PGPORT:-5432}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# apt_install PKG...: install Debian packages that are missing (root only).
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  if [ ! -f "$RUN_DIR/.apt-updated" ]; then
    apt-get update -q >/dev/null && touch "$RUN_DIR/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
}

# pid_alive NAME: true when $RUN_DIR/NAME.pid names a live process.
pid_alive() {
  local f="$RUN_DIR/$1.pid"
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

# stop_pid NAME: TERM the recorded process, wait, then KILL; remove the pid file.
stop_pid() {
  local name="$1" f="$RUN_DIR/$1.pid" pid i
  [ -f "$f" ] || return 0
  pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# wait_http NAME URL TIMEOUT_S: poll until URL answers 2xx, showing progress.
wait_http() {
  local name="$1" url="$2" timeout="$3" start now
  start=$(date +%s)
  while true; do
    if curl -fsS -o /dev/null -m 5 "$url" 2>/dev/null; then
      log "$name ready after $(( $(date +%s) - start )) s"
      return 0
    fi
    now=$(date +%s)
    if [ $(( now - start )) -ge "$timeout" ]; then
      die "$name did not answer at $url within ${timeout}s (log: $RUN_DIR/$name.log)"
    fi
    if [ -f "$RUN_DIR/$name.pid" ] && ! pid_alive "$name"; then
      tail -n 40 "$RUN_DIR/$name.log" >&2 || true
      die "$name exited during start-up (log: $RUN_DIR/$name.log)"
    fi
    sleep 2
  done
}

# psql_super SQL...: run SQL as the PostgreSQL superuser over the local socket.
psql_super() {
  runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -X -p "$PG_PORT" "$@"
}

# java_home_for MIN_MAJOR: print a JDK home whose major version is >= MIN_MAJOR.
java_home_for() {
  local min="$1" d v
  for d in ${JAVA_HOME:-} /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/*; do
    [ -x "$d/bin/java" ] || continue
    v=$("$d/bin/java" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/{print $2}')
    if [ "${v%%.*}" -ge "$min" ] 2>/dev/null; then echo "$d"; return 0; fi
  done
  return 1
}
