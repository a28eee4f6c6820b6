#!/usr/bin/env bash
# Redis (Celery broker) from Debian's packages, run as our own process with a pid file.
# Appendonly persistence so a broker restart loses no queued message.
# Usage: deploy/redis.sh start|stop|status
source "$(dirname "$0")/common.sh"
REDIS_PORT="${CONFLICTDESK_REDIS_PORT:-6379}"

start() {
  apt_install redis-server
  if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    log "Redis already answering on $REDIS_PORT"; return 0
  fi
  mkdir -p "$RUN_DIR/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
    --pidfile "$RUN_DIR/redis.pid" --dir "$RUN_DIR/redis" \
    --appendonly yes --appendfsync everysec --logfile "$RUN_DIR/redis.log"
  for i in $(seq 1 30); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.5; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null || die "Redis did not start (log: $RUN_DIR/redis.log)"
  log "Redis ready on port $REDIS_PORT"
}

case "${1:-start}" in
  start) start ;;
  stop) stop_pid redis ;;
  status) redis-cli -p "$REDIS_PORT" ping ;;
  *) die "usage: $0 start|stop|status" ;;
esac
