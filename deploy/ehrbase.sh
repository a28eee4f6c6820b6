#!/usr/bin/env bash
# EHRbase 2.16 CDRs, one per site, built from Maven Central (no Docker).
#
# Usage: deploy/ehrbase.sh start [N|I-J] | stop | status [N] | build
#   start N   build deploy/ehrbase (once), prepare database ${EHRBASE_DB_PREFIX}{i} and
#             start site i on http://127.0.0.1:$((8100+i))/ehrbase for i in 1..N
#             (N defaults to $CONFLICTDESK_SITES, else 2). Instances already
#             answering are left alone. Waits until every instance answers
#             GET /ehrbase/rest/status.
#   stop      stop every instance recorded in .run/ehrbase-site*.pid (only those).
#   status    show pid, readiness and RSS of each site.
#   build     (re)build the launcher jar if its sources changed.
#
# Environment:
#   EHRBASE_DB_PASSWORD   password of the roles ehrbase / ehrbase_restricted (dev default)
#   EHRBASE_DB_PREFIX     site i's database is <prefix><i> (default ehrbase_site; the demo
#                         uses ehrbase_demo_site, so its sites hold demo data only, never the
#                         tests' and benchmarks' thousands of compositions)
#   EHRBASE_AUTH          none (default: development and test servers on loopback, whose
#                         sites carry no credentials) | basic: EHRbase's own security.authType;
#                         every request but / then needs the user (or admin) credentials below.
#                         The demo (deploy/demo.sh) and compose run with basic; so does the image
#                         (application.yml) unless told otherwise.
#   EHRBASE_CREDENTIALS   user:password for the openEHR API; EHRBASE_ADMIN_CREDENTIALS the
#                         same for /rest/admin. Unset: read from, or else generated once into,
#                         $RUN_DIR/ehrbase-credentials and ehrbase-admin-credentials (mode 600),
#                         so the engine (demo.sh) reads the same secret. Never in argv.
#   EHRBASE_JVM           dev (default: small heap, serial GC, C1 only: fast start) | production
#                         (the same with the C2 tier: the image's default and the benchmarks')
#   EHRBASE_JAVA_OPTS     JVM options, instead of either set
#   EHRBASE_START_TIMEOUT seconds to wait for all instances (default 300)
# Needs PostgreSQL on $PGHOST:$PGPORT (deploy/postgres.sh start).
source "$(dirname "$0")/common.sh"

EHRBASE_SRC="$REPO_DIR/deploy/ehrbase"
JAR="$EHRBASE_SRC/target/ehrbase-launcher.jar"
# Instances run from the jar extracted next to its lib/ (Spring Boot's
# "jarmode=tools extract"): start-up measured 2-4 s faster than from the
# nested fat jar, and a rebuild never rewrites jars a running JVM has open.
RUN_JAR="$EHRBASE_SRC/target/extracted/ehrbase-launcher.jar"
# The database steps are shared with the postgres container (deploy/docker-compose.yml).
SQL_DIR="$REPO_DIR/deploy/sql"
BASE_PORT=8100
DB_ADMIN_ROLE=ehrbase               # owns schemas ehr/ext, runs Flyway
DB_USER_ROLE=ehrbase_restricted     # runtime role: DML only
DB_PASSWORD="${EHRBASE_DB_PASSWORD:-ehrbase-dev}"
DB_PREFIX="${EHRBASE_DB_PREFIX:-ehrbase_site}"
[[ "$DB_PREFIX" =~ ^[a-z_][a-z0-9_]*$ ]] || die "EHRBASE_DB_PREFIX must be a lower-case SQL name, got '$DB_PREFIX'"
START_TIMEOUT="${EHRBASE_START_TIMEOUT:-300}"
AUTH="${EHRBASE_AUTH:-none}"
[[ "$AUTH" =~ ^(basic|none)$ ]] || die "EHRBASE_AUTH must be basic or none, got '$AUTH'"
# Measured: the live heap after start-up and a smoke run is ~70 MB, and 150
# commits + 42 template uploads ran fine in 256 MB; 384 MB leaves headroom for
# big AQL results. SerialGC and the C1-only JIT start faster and use less
# memory than G1 + C2 on a 2-core box (steady-state throughput is lower): right
# for test servers that start often. Production (the image, compose) and the
# benchmarks (EHRBASE_JVM=production) keep the heap and GC but run the C2 tier.
JAVA_OPTS_DEFAULT="-Xms128m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss512k -XX:ReservedCodeCacheSize=96m"
JAVA_OPTS_PRODUCTION="-Xms128m -Xmx384m -XX:+UseSerialGC -Xss512k"
case "${EHRBASE_JVM:-dev}" in
  dev) JAVA_OPTS="${EHRBASE_JAVA_OPTS:-$JAVA_OPTS_DEFAULT}" ;;
  production) JAVA_OPTS="${EHRBASE_JAVA_OPTS:-$JAVA_OPTS_PRODUCTION}" ;;
  *) die "EHRBASE_JVM must be dev or production, got '$EHRBASE_JVM'" ;;
esac
# Tomcat loads its native library (APR probe): allow it without JDK 22+'s warning.
JAVA_OPTS="$JAVA_OPTS --enable-native-access=ALL-UNNAMED"

# credentials VAR FILE USER: VAR's value, else FILE's, else a new USER:<random> written to FILE (0600).
credentials() {
  local var="$1" file="$RUN_DIR/$2" user="$3"
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  if [ ! -s "$file" ]; then
    ( umask 077; python3 -c 'import secrets, sys; print(sys.argv[1] + ":" + secrets.token_urlsafe(24))' "$user" >"$file.tmp" )
    mv -f "$file.tmp" "$file"
    log "generated EHRbase credentials for '$user' in $file"
  fi
  cat "$file"
}
CREDENTIALS="$(credentials EHRBASE_CREDENTIALS ehrbase-credentials conflictdesk)"
ADMIN_CREDENTIALS="$(credentials EHRBASE_ADMIN_CREDENTIALS ehrbase-admin-credentials conflictdesk-admin)"
[[ "$CREDENTIALS" == *:?* && "$ADMIN_CREDENTIALS" == *:?* ]] || die "EHRbase credentials must be user:password"

port_of() { echo $(( BASE_PORT + $1 )); }
status_url() { echo "http://127.0.0.1:$(port_of "$1")/ehrbase/rest/status"; }
# curl with the API credentials on stdin (curl -K -), never in argv; sent only when auth is on.
curl_site() {
  if [ "$AUTH" = basic ]; then printf 'user = "%s"\n' "$CREDENTIALS" | curl -K - "$@"
  else curl "$@"; fi
}
# A site answers with 200, or with 401 when it was started with auth on (the demo) and this caller runs
# without its credentials (`make status`): up either way.
answering() {
  local code; code="$(curl_site -sS -o /dev/null -w '%{http_code}' -m 5 "$(status_url "$1")" 2>/dev/null)"
  [ "$code" = 200 ] || { [ "$AUTH" = none ] && [ "$code" = 401 ]; }
}
port_listening() { ss -Hltn "sport = :$(port_of "$1")" 2>/dev/null | grep -q .; }
rss_mb() { local kb; kb=$(ps -o rss= -p "$1" 2>/dev/null | tr -d ' '); [ -n "$kb" ] && echo $(( kb / 1024 )) || echo "-"; }

java_bin() {
  local jh
  jh="$(java_home_for 21)" || die "EHRbase 2.16 needs Java 21+; none found under /usr/lib/jvm (Temurin 25 expected)"
  echo "$jh"
}

# build: package the launcher unless the jar is newer than the pom and all sources.
build() {
  local jh; jh="$(java_bin)"
  exec 9>"$RUN_DIR/ehrbase-build.lock"
  flock 9   # two concurrent starts must not build into the same target/
  if [ -f "$JAR" ] && [ -z "$(find "$EHRBASE_SRC/pom.xml" "$EHRBASE_SRC/src" -newer "$JAR" -print -quit)" ]; then
    log "launcher jar is up to date ($JAR)"
  else
    command -v mvn >/dev/null || apt_install maven
    log "building EHRbase launcher (first time downloads ~120 MB into ~/.m2)"
    local t0=$SECONDS
    ( cd "$EHRBASE_SRC" && JAVA_HOME="$jh" mvn -B -q package -DskipTests ) >"$RUN_DIR/ehrbase-build.log" 2>&1 \
      || { tail -n 40 "$RUN_DIR/ehrbase-build.log" >&2; die "maven build failed (log: $RUN_DIR/ehrbase-build.log)"; }
    [ -f "$JAR" ] || die "build produced no $JAR"
    log "built $JAR in $(( SECONDS - t0 )) s"
  fi
  if [ ! -f "$RUN_JAR" ] || [ "$JAR" -nt "$RUN_JAR" ]; then
    local dest="$EHRBASE_SRC/target/extracted"
    rm -rf "$dest.new" "$dest.old"
    "$jh/bin/java" -Djarmode=tools -jar "$JAR" extract --destination "$dest.new" >>"$RUN_DIR/ehrbase-build.log" 2>&1 \
      || die "extracting $JAR failed (log: $RUN_DIR/ehrbase-build.log)"
    # Swap whole directories: running instances keep the files they opened.
    [ -d "$dest" ] && mv "$dest" "$dest.old"
    mv "$dest.new" "$dest" && rm -rf "$dest.old"
    log "extracted to $dest"
  fi
  exec 9>&-
}

# ensure_roles: the two login roles shared by all sites (idempotent).
ensure_roles() {
  local r
  for r in "$DB_ADMIN_ROLE" "$DB_USER_ROLE"; do
    psql_super -d postgres -v role="$r" -v pass="$DB_PASSWORD" <"$SQL_DIR/role.sql"
  done
}

# ensure_site_db I: database <prefix>I prepared as EHRbase expects before
# Flyway runs (the steps that need a superuser). Every statement is idempotent.
ensure_site_db() {
  local db="$DB_PREFIX$1"
  if ! psql_super -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1; then
    log "creating database $db"
    psql_super -d postgres -v db="$db" -v owner="$DB_ADMIN_ROLE" <"$SQL_DIR/database.sql"
  fi
  PGOPTIONS='-c client_min_messages=warning' psql_super -d "$db" -v db="$db" -v adm="$DB_ADMIN_ROLE" -v usr="$DB_USER_ROLE" <"$SQL_DIR/ehrbase_site.sql"
}

# launch I: start site I in the background (own session, so it outlives this
# script and its caller's process group); record its pid.
launch() {
  local i="$1" name="ehrbase-site$1" port jh
  port="$(port_of "$i")"; jh="$(java_bin)"
  mkdir -p "$RUN_DIR/ehrbase-site$i.work"
  : >"$RUN_DIR/$name.log"
  # Passwords go through the environment, not argv (ps shows argv).
  # shellcheck disable=SC2086
  ( cd "$RUN_DIR/ehrbase-site$i.work" && \
    SPRING_DATASOURCE_PASSWORD="$DB_PASSWORD" SPRING_FLYWAY_PASSWORD="$DB_PASSWORD" \
    SECURITY_AUTHTYPE="${AUTH^^}" \
    EHRBASE_AUTH_USER="${CREDENTIALS%%:*}" EHRBASE_AUTH_PASSWORD="${CREDENTIALS#*:}" \
    EHRBASE_AUTH_ADMIN_USER="${ADMIN_CREDENTIALS%%:*}" EHRBASE_AUTH_ADMIN_PASSWORD="${ADMIN_CREDENTIALS#*:}" \
    MALLOC_ARENA_MAX=2 \
    exec setsid "$jh/bin/java" $JAVA_OPTS -Djava.io.tmpdir="$RUN_DIR/ehrbase-site$i.work" \
      -jar "$RUN_JAR" \
      --server.address=127.0.0.1 --server.port="$port" \
      --server.nodename="site$i.conflictdesk.local" \
      --spring.datasource.url="jdbc:postgresql://$PG_HOST:$PG_PORT/$DB_PREFIX$i" \
      --spring.datasource.username="$DB_USER_ROLE" \
      --spring.flyway.user="$DB_ADMIN_ROLE" \
      </dev/null >>"$RUN_DIR/$name.log" 2>&1 8>&- 9>&- ) &
  echo $! >"$RUN_DIR/$name.pid"
  echo "$DB_PREFIX$i" >"$RUN_DIR/$name.db"
  log "site$i: started pid $! on port $port, database $DB_PREFIX$i, auth $AUTH (log: $RUN_DIR/$name.log)"
}

start() {
  local n="${1:-${CONFLICTDESK_SITES:-2}}" i pending=() ready=() t0 now last=0 line first=1
  # I-J: only sites I..J (e.g. a lone site 9 for a check, beside the running 1..N).
  if [[ "$n" =~ ^([1-9][0-9]?)-([1-9][0-9]?)$ ]]; then first="${BASH_REMATCH[1]}"; n="${BASH_REMATCH[2]}"; fi
  [[ "$n" =~ ^[1-9][0-9]?$ && "$first" -le "$n" ]] || die "start N|I-J: sites 1..99, got '${1:-}'"
  t0=$SECONDS
  # One caller at a time decides what to launch and launches it, so two
  # concurrent starts never launch the same site twice; waiting is unlocked.
  exec 8>"$RUN_DIR/ehrbase-start.lock"
  flock 8
  for i in $(seq "$first" "$n"); do
    if answering "$i"; then
      log "site$i already answering on port $(port_of "$i"); left alone"
      local running_db; running_db="$(cat "$RUN_DIR/ehrbase-site$i.db" 2>/dev/null || true)"
      [ -n "$running_db" ] && [ "$running_db" != "$DB_PREFIX$i" ] && \
        log "WARNING: site$i runs on database $running_db, not $DB_PREFIX$i (make stop first to switch)"
      continue
    fi
    if pid_alive "ehrbase-site$i"; then log "site$i (pid $(cat "$RUN_DIR/ehrbase-site$i.pid")) is still starting"; pending+=("$i"); continue; fi
    port_listening "$i" && die "port $(port_of "$i") is taken by something that is not our EHRbase site$i"
    pending+=("$i")
  done
  [ ${#pending[@]} -eq 0 ] && { log "all EHRbase sites $first..$n ready"; return 0; }

  build
  runuser -u postgres -- pg_isready -q -h "$PG_HOST" -p "$PG_PORT" || die "PostgreSQL is not ready (run deploy/postgres.sh start)"
  ensure_roles
  for i in "${pending[@]}"; do
    ensure_site_db "$i"
    pid_alive "ehrbase-site$i" || launch "$i"
  done
  exec 8>&-

  # Wait for all instances together, reporting progress every 15 s.
  last=$SECONDS
  while [ ${#pending[@]} -gt 0 ]; do
    local still=()
    for i in "${pending[@]}"; do
      if answering "$i"; then
        log "site$i ready on http://127.0.0.1:$(port_of "$i")/ehrbase after $(( SECONDS - t0 )) s (pid $(cat "$RUN_DIR/ehrbase-site$i.pid"), RSS $(rss_mb "$(cat "$RUN_DIR/ehrbase-site$i.pid")") MB)"
        ready+=("$i")
      elif ! pid_alive "ehrbase-site$i"; then
        tail -n 40 "$RUN_DIR/ehrbase-site$i.log" >&2 || true
        rm -f "$RUN_DIR/ehrbase-site$i.pid"
        die "site$i exited during start-up (log: $RUN_DIR/ehrbase-site$i.log)"
      else
        still+=("$i")
      fi
    done
    pending=("${still[@]+"${still[@]}"}")
    [ ${#pending[@]} -eq 0 ] && break
    now=$SECONDS
    if [ $(( now - t0 )) -ge "$START_TIMEOUT" ]; then
      die "site(s) ${pending[*]} not ready within ${START_TIMEOUT}s (logs: $RUN_DIR/ehrbase-site*.log)"
    fi
    if [ $(( now - last )) -ge 15 ]; then
      last=$now
      for i in "${pending[@]}"; do
        line="$(grep -aE ' (INFO|WARN|ERROR) ' "$RUN_DIR/ehrbase-site$i.log" 2>/dev/null | tail -n1 | sed -E 's/^.* : //' | cut -c1-90 || true)"
        log "site$i starting ($(( now - t0 )) s): ${line:-JVM starting}"
      done
    fi
    sleep 1
  done
  log "all EHRbase sites $first..$n ready"
}

stop() {
  local f name any=0
  for f in "$RUN_DIR"/ehrbase-site*.pid; do
    [ -f "$f" ] || continue
    any=1; name="$(basename "$f" .pid)"
    stop_pid "$name"
  done
  [ $any -eq 1 ] || log "no EHRbase instance recorded in $RUN_DIR"
}

# started_sites: the highest site number this checkout ever started (its pid files), at least 2.
started_sites() {
  local n=2 f i
  for f in "$RUN_DIR"/ehrbase-site*.pid; do
    [ -f "$f" ] || continue
    i="${f##*ehrbase-site}"; i="${i%.pid}"
    [ "$i" -gt "$n" ] && n="$i"
  done
  echo "$n"
}

status() {
  local n="${1:-${CONFLICTDESK_SITES:-$(started_sites)}}" i pid state rc=0
  for i in $(seq 1 "$n"); do
    pid="-"; [ -f "$RUN_DIR/ehrbase-site$i.pid" ] && pid="$(cat "$RUN_DIR/ehrbase-site$i.pid")"
    if answering "$i"; then state=ready
    elif pid_alive "ehrbase-site$i"; then state=starting; rc=1
    else state=stopped; rc=1; fi
    printf 'site%s  port %s  %-8s pid %-8s RSS %s MB\n' "$i" "$(port_of "$i")" "$state" "$pid" \
      "$( [ "$pid" != - ] && rss_mb "$pid" || echo -)"
  done
  return $rc
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop ;;
  status) status "${2:-}" ;;
  build) build ;;
  *) die "usage: $0 start [N|I-J] | stop | status [N] | build" ;;
esac
