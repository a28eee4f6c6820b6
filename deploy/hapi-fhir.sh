#!/usr/bin/env bash
# ConflictDesk's own HAPI FHIR R4 JPA server (deploy/hapi-fhir/, PostgreSQL database `hapi`).
# Usage: deploy/hapi-fhir.sh start|stop|status
#   HAPI_DB_NAME      the server's database (default hapi: the test servers'; the demo uses
#                     hapi_demo, so it never replays the tests' and benchmarks' resources)
#   HAPI_DB_PASSWORD  password of role `hapi` (dev default below)
#   HAPI_DB_RESET=1   drop and recreate database $HAPI_DB_NAME before starting (clean slate;
#                     a server we started is stopped first)
#   HAPI_XMX          JVM max heap (default 1g)
#   HAPI_JVM          dev (default: C1-only JIT, starts faster on 2 cores: test servers start
#                     often) | production (the C2 tier too: steady-state speed; the image,
#                     compose and the benchmarks); HAPI_JAVA_OPTS overrides either
#   HAPI_AUTH         none (default: the loopback test server) | basic: every request but
#                     GET /fhir/metadata needs HAPI_CREDENTIALS (user:password; unset: read from,
#                     or generated once into, $RUN_DIR/hapi-credentials, mode 600), checked by
#                     BasicAuthFilter. The demo and compose run with basic. Never in argv.
# FHIR IG packages (conflictdesk.packages.list in application.properties, e.g. mCODE STU4) are
# fetched with `npm pack` into $CACHE_DIR/fhir-packages/ once (kept, never committed) on build/start
# and loaded by the server at start-up (FhirPackageLoader).
# MDM (patient matching) rules: deploy/hapi-fhir/mdm-rules.json, read at start-up.
# start is idempotent: when something already answers /fhir/metadata on 8090 it is left alone.
# stop only ever kills the pid recorded in $RUN_DIR/hapi-fhir.pid.
source "$(dirname "$0")/common.sh"

NAME=hapi-fhir
MODULE_DIR="$REPO_DIR/deploy/hapi-fhir"
JAR="$MODULE_DIR/target/conflictdesk-hapi-fhir.jar"
HAPI_PORT=8090
HAPI_BASE="http://127.0.0.1:$HAPI_PORT/fhir"
HAPI_DB_NAME="${HAPI_DB_NAME:-hapi}"
[[ "$HAPI_DB_NAME" =~ ^[a-z_][a-z0-9_]*$ ]] || die "HAPI_DB_NAME must be a lower-case SQL name, got '$HAPI_DB_NAME'"
HAPI_DB_USER=hapi
HAPI_DB_PASSWORD="${HAPI_DB_PASSWORD:-hapi-dev-password}"
LOG_FILE="$RUN_DIR/$NAME.log"
PID_FILE="$RUN_DIR/$NAME.pid"
DB_FILE="$RUN_DIR/$NAME.db"  # the database the server we started runs on
RUN_JAR="$RUN_DIR/$NAME.jar"
PROPS="$MODULE_DIR/src/main/resources/application.properties"
PACKAGES_DIR="$CACHE_DIR/fhir-packages"
# MDM match rules (versioned here; read at start-up, so a change needs `stop; start`).
MDM_RULES="$MODULE_DIR/mdm-rules.json"

answering() { curl -fsS -o /dev/null -m 5 "$HAPI_BASE/metadata" 2>/dev/null; }

# auth_credentials: HAPI_CREDENTIALS, else $RUN_DIR/hapi-credentials (made once, 0600) when HAPI_AUTH=basic.
auth_credentials() {
  case "${HAPI_AUTH:-none}" in
    none) return 0 ;;
    basic) ;;
    *) die "HAPI_AUTH must be basic or none, got '$HAPI_AUTH'" ;;
  esac
  if [ -n "${HAPI_CREDENTIALS:-}" ]; then echo "$HAPI_CREDENTIALS"; return; fi
  local file="$RUN_DIR/hapi-credentials"
  if [ ! -s "$file" ]; then
    ( umask 077; python3 -c 'import secrets; print("conflictdesk:" + secrets.token_urlsafe(24))' >"$file.tmp" )
    mv -f "$file.tmp" "$file"
    log "generated HAPI FHIR credentials in $file"
  fi
  cat "$file"
}

java_home() {
  # HAPI 8 / Boot 3.5 need Java 17; prefer the machine's default 17 when present.
  if [ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/java ]; then echo /usr/lib/jvm/java-17-openjdk-amd64
  else java_home_for 17 || die "no JDK >= 17 found"; fi
}

# The jar is stale when the pom, a source file, a resource or the MDM rules are newer than it.
jar_stale() {
  [ -f "$JAR" ] || return 0
  [ -n "$(find "$MODULE_DIR/pom.xml" "$MODULE_DIR/src" "$MDM_RULES" -newer "$JAR" -print -quit)" ]
}

build() {
  if ! jar_stale; then log "$NAME jar up to date"; return 0; fi
  apt_install maven openjdk-17-jdk-headless
  log "building $NAME (mvn package; first build downloads ~350 MB into ~/.m2)"
  local t0=$SECONDS
  if ! (cd "$MODULE_DIR" && JAVA_HOME="$(java_home)" mvn -B -q -DskipTests package) \
      >"$RUN_DIR/$NAME-build.log" 2>&1; then
    tail -n 40 "$RUN_DIR/$NAME-build.log" >&2
    die "maven build of $MODULE_DIR failed (log: $RUN_DIR/$NAME-build.log)"
  fi
  log "$NAME built in $(( SECONDS - t0 )) s"
}

# The package list (name#version:MODE, comma separated, backslash-continued) from application.properties.
package_list() {
  awk '/^conflictdesk\.packages\.list=/ {on=1; sub(/^[^=]*=/, "")}
       on {line=$0; cont=sub(/\\$/, "", line); printf "%s", line; if (!cont) exit}' "$PROPS" \
    | tr ',' '\n' | sed 's/[[:space:]]//g; s/:.*$//' | grep -v '^$'
}

# Fetch every listed package once into $PACKAGES_DIR as <name>-<version>.tgz (what `npm pack` names it).
fetch_packages() {
  mkdir -p "$PACKAGES_DIR"
  local ref name version file tmp
  for ref in $(package_list); do
    name="${ref%%#*}"; version="${ref#*#}"; file="$PACKAGES_DIR/$name-$version.tgz"
    [ -s "$file" ] && continue
    command -v npm >/dev/null || apt_install npm
    log "fetching FHIR package $name@$version (npm pack) into $PACKAGES_DIR"
    tmp="$(mktemp -d "$PACKAGES_DIR/.tmp.XXXXXX")"
    if ! (cd "$tmp" && npm pack --silent "$name@$version" >/dev/null 2>"$tmp/npm.err"); then
      cat "$tmp/npm.err" >&2; rm -rf "$tmp"
      die "npm pack $name@$version failed (is the npm registry reachable?)"
    fi
    # A FHIR package has package/package.json naming itself; refuse anything else.
    if ! tar -xzOf "$tmp/$name-$version.tgz" package/package.json 2>/dev/null \
        | grep -q "\"name\"[[:space:]]*:[[:space:]]*\"$name\""; then
      rm -rf "$tmp"; die "$name@$version from npm is not a FHIR package (no package/package.json naming it)"
    fi
    mv -f "$tmp/$name-$version.tgz" "$file" && rm -rf "$tmp"
  done
}

reset_db() {
  log "HAPI_DB_RESET=1: dropping and recreating database $HAPI_DB_NAME"
  stop_pid "$NAME"
  psql_super -d postgres -c "DROP DATABASE IF EXISTS \"$HAPI_DB_NAME\" WITH (FORCE)"
}

start() {
  if [ "${HAPI_DB_RESET:-0}" = 1 ]; then
    # Only a server we started can be stopped for the reset.
    if answering && ! pid_alive "$NAME"; then
      die "something not started by this script answers on $HAPI_PORT; cannot reset under it"
    fi
    reset_db
  elif answering; then
    log "$NAME already answering at $HAPI_BASE; leaving it alone"
    local running_db; running_db="$(cat "$DB_FILE" 2>/dev/null || true)"
    [ -n "$running_db" ] && [ "$running_db" != "$HAPI_DB_NAME" ] && \
      log "WARNING: $NAME runs on database $running_db, not $HAPI_DB_NAME (make stop first to switch)"
    fetch_packages  # the tests read the IG packages from this checkout's cache, whoever started the server
    return 0
  fi
  if pid_alive "$NAME"; then
    # Our JVM is still starting up: just wait for it.
    log "$NAME (pid $(cat "$PID_FILE")) still starting; waiting"
    wait_http "$NAME" "$HAPI_BASE/metadata" 300
    return 0
  fi
  runuser -u postgres -- pg_isready -q -h "$PG_HOST" -p "$PG_PORT" \
    || die "PostgreSQL is not running on $PG_HOST:$PG_PORT (deploy/postgres.sh start)"
  # deploy/sql/ is shared with the postgres container (deploy/docker-compose.yml).
  psql_super -d postgres -v role="$HAPI_DB_USER" -v pass="$HAPI_DB_PASSWORD" <"$REPO_DIR/deploy/sql/role.sql"
  psql_super -d postgres -v db="$HAPI_DB_NAME" -v owner="$HAPI_DB_USER" <"$REPO_DIR/deploy/sql/database.sql"
  build
  fetch_packages
  local jhome; jhome="$(java_home)"
  local credentials; credentials="$(auth_credentials)"
  # Run a private copy (atomic rename) so a later `build` never rewrites the jar under a live JVM.
  cp "$JAR" "$RUN_JAR.tmp" && mv -f "$RUN_JAR.tmp" "$RUN_JAR"
  log "starting $NAME on $HAPI_BASE (log: $LOG_FILE)"
  local jit
  case "${HAPI_JVM:-dev}" in
    dev) jit="-XX:TieredStopAtLevel=1" ;;
    production) jit="" ;;
    *) die "HAPI_JVM must be dev or production, got '$HAPI_JVM'" ;;
  esac
  # setsid: its own session, so ending the caller's process group never takes HAPI down.
  HAPI_DB_PASSWORD="$HAPI_DB_PASSWORD" \
  HAPI_DB_URL="jdbc:postgresql://$PG_HOST:$PG_PORT/$HAPI_DB_NAME" \
  HAPI_DB_USER="$HAPI_DB_USER" \
  HAPI_PACKAGES_DIR="$PACKAGES_DIR" \
  HAPI_MDM_RULES="file:$MDM_RULES" \
  HAPI_AUTH_CREDENTIALS="$credentials" \
    setsid nohup "$jhome/bin/java" -Xms256m -Xmx"${HAPI_XMX:-1g}" ${HAPI_JAVA_OPTS:-$jit} \
      -Djava.awt.headless=true -jar "$RUN_JAR" >"$LOG_FILE" 2>&1 </dev/null &
  echo $! >"$PID_FILE"
  echo "$HAPI_DB_NAME" >"$DB_FILE"
  local t0=$SECONDS
  wait_http "$NAME" "$HAPI_BASE/metadata" 300
  log "$NAME pid $(cat "$PID_FILE"), up $(( SECONDS - t0 )) s after launch, RSS $(ps -o rss= -p "$(cat "$PID_FILE")" | awk '{printf "%d MB", $1/1024}')"
}

status() {
  if answering; then
    if pid_alive "$NAME"; then
      echo "$NAME: running (pid $(cat "$PID_FILE"), RSS $(ps -o rss= -p "$(cat "$PID_FILE")" | awk '{printf "%d MB", $1/1024}')) at $HAPI_BASE, database $(cat "$DB_FILE" 2>/dev/null || echo '?')"
    else
      echo "$NAME: answering at $HAPI_BASE (not started by this script)"
    fi
    return 0
  fi
  if pid_alive "$NAME"; then echo "$NAME: starting (pid $(cat "$PID_FILE")), not answering yet"; return 1; fi
  echo "$NAME: stopped"; return 3
}

case "${1:-start}" in
  start) start ;;
  stop) stop_pid "$NAME" ;;
  status) status ;;
  build) build; fetch_packages ;;
  *) die "usage: $0 start|stop|status|build" ;;
esac
