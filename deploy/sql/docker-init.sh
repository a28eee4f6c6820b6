#!/usr/bin/env bash
# The postgres container's first start (/docker-entrypoint-initdb.d): the same
# roles and databases deploy/postgres.sh, deploy/hapi-fhir.sh and
# deploy/ehrbase.sh create, from the same SQL files in this directory.
# Idempotent: to add sites to an existing volume, run it again, e.g.
#   docker compose -f deploy/docker-compose.yml exec -u postgres -e CONFLICTDESK_SITES=3 \
#     postgres bash /docker-entrypoint-initdb.d/10-conflictdesk.sh
set -euo pipefail
SQL_DIR="${CONFLICTDESK_SQL_DIR:-/conflictdesk-sql}"
SITES="${CONFLICTDESK_SITES:-2}"
[[ "$SITES" =~ ^[1-9][0-9]?$ ]] || { echo "CONFLICTDESK_SITES must be 1..99, got '$SITES'" >&2; exit 1; }
: "${CONFLICTDESK_DB_PASSWORD:?}" "${CONFLICTDESK_DB_APP_PASSWORD:?}" "${HAPI_DB_PASSWORD:?}" "${EHRBASE_DB_PASSWORD:?}"
APP_USER="${CONFLICTDESK_DB_USER:-conflictdesk}"
APP_ROLE="${CONFLICTDESK_DB_APP_ROLE:-conflictdesk_app}"
APP_DB="${CONFLICTDESK_DB_NAME:-conflictdesk}"

# Over the local socket as the superuser, as the scripts' psql_super does.
psql_super() { psql -v ON_ERROR_STOP=1 -q -X --username "${POSTGRES_USER:-postgres}" "$@"; }
role() { psql_super -d postgres -v role="$1" -v pass="$2" <"$SQL_DIR/role.sql"; }
database() { psql_super -d postgres -v db="$1" -v owner="$2" <"$SQL_DIR/database.sql"; }

# deploy/postgres.sh: the migration owner, its database, and the application role
# (granted INSERT and SELECT only on the audit tables by every `migrate`).
role "$APP_USER" "$CONFLICTDESK_DB_PASSWORD"
database "$APP_DB" "$APP_USER"
role "$APP_ROLE" "$CONFLICTDESK_DB_APP_PASSWORD"
# deploy/hapi-fhir.sh (role and database `hapi`)
role hapi "$HAPI_DB_PASSWORD"
database hapi hapi
# deploy/ehrbase.sh (roles ehrbase and ehrbase_restricted, database ehrbase_site{i})
role ehrbase "$EHRBASE_DB_PASSWORD"
role ehrbase_restricted "$EHRBASE_DB_PASSWORD"
for i in $(seq 1 "$SITES"); do
  database "ehrbase_site$i" ehrbase
  PGOPTIONS='-c client_min_messages=warning' psql_super -d "ehrbase_site$i" \
    -v db="ehrbase_site$i" -v adm=ehrbase -v usr=ehrbase_restricted <"$SQL_DIR/ehrbase_site.sql"
done
echo "conflictdesk: roles and databases ready (app, hapi, ehrbase_site1..$SITES)"
