#!/usr/bin/env bash
# Smoke test of running EHRbase sites with curl: the calls the sync engine relies on.
#
# Usage: deploy/ehrbase-smoke.sh [N | BASE_URL...]
#   N          test sites 1..N on http://127.0.0.1:810{i}/ehrbase (default $CONFLICTDESK_SITES or 2)
#   BASE_URL   test these servers instead, e.g. http://127.0.0.1:8101/ehrbase
# Environment:
#   SMOKE_TEMPLATE  OPT to upload     (default corpus templates/vital_signs_ehrn.opt)
#   SMOKE_FLAT      FLAT composition  (default corpus compositions/vital_signs_ehrn.flat.json)
#   SMOKE_KEEP=1    keep the test EHR (default: deleted through the admin API)
#   EHRBASE_ADMIN_CREDENTIALS  user:password sent to sites with basic auth (default: the one
#                   deploy/ehrbase.sh keeps in .run/ehrbase-admin-credentials, if any)
# Prints one PASS/FAIL line per check and "N passed, N failed"; exits 1 on any failure.
set -uo pipefail
REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CORPUS="${CONFLICTDESK_CORPUS:-$REPO_DIR/tests/fixtures/corpus}/openehr"
OPT="${SMOKE_TEMPLATE:-$CORPUS/templates/vital_signs_ehrn.opt}"
FLAT="${SMOKE_FLAT:-$CORPUS/compositions/vital_signs_ehrn.flat.json}"
command -v python3 >/dev/null || { echo "python3 is needed to read JSON" >&2; exit 2; }
[ -r "$OPT" ] && [ -r "$FLAT" ] || { echo "missing test data: $OPT / $FLAT" >&2; exit 2; }

PASSED=0 FAILED=0
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
ok()   { PASSED=$((PASSED + 1)); echo "PASS  $*"; }
bad()  { FAILED=$((FAILED + 1)); echo "FAIL  $*"; [ -s "$TMP/body" ] && head -c 400 "$TMP/body" | sed 's/^/      /' && echo; }
# req METHOD URL [curl args...]: body to $TMP/body, headers to $TMP/hdr, prints the status code.
ADMIN_CREDENTIALS="${EHRBASE_ADMIN_CREDENTIALS:-$(cat "${CONFLICTDESK_RUN_DIR:-$REPO_DIR/.run}/ehrbase-admin-credentials" 2>/dev/null || true)}"
# The credentials go to curl in a config file (-K), never in argv; an open site ignores them.
( umask 077; [ -n "$ADMIN_CREDENTIALS" ] && printf 'user = "%s"\n' "$ADMIN_CREDENTIALS" >"$TMP/curlrc"; touch "$TMP/curlrc" )
req() {
  local m="$1" u="$2"; shift 2
  curl -K "$TMP/curlrc" -sS -m 60 -X "$m" -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' "$@" "$u" 2>"$TMP/err" || true
}
# expect WHAT WANT GOT
expect() { if [ "$3" = "$2" ]; then ok "$1 ($3)"; else bad "$1: expected HTTP $2, got $3"; fi; }
# etag: the ETag of the last response without its quotes.
etag() { sed -nE 's/^[Ee][Tt][Aa][Gg]: *"?([^"\r]*)"?\r?$/\1/p' "$TMP/hdr" | tail -n1; }
# jget PYEXPR: evaluate PYEXPR on the last JSON body bound to d.
jget() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$TMP/body" 2>/dev/null; }
urlenc() { python3 -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# The template id inside the OPT (<template_id><value>...</value>).
TEMPLATE_ID="$(python3 - "$OPT" <<'PY'
import re, sys
m = re.search(r"<template_id>\s*<value>([^<]+)</value>", open(sys.argv[1], encoding="utf-8").read())
print(m.group(1) if m else "")
PY
)"
[ -n "$TEMPLATE_ID" ] || { echo "no template_id in $OPT" >&2; exit 2; }
TID_Q="$(urlenc "$TEMPLATE_ID")"

smoke_site() {
  local base="$1" B="$1/rest/openehr/v1" code ehr uid v1 v2 sys since
  echo "== $base (template '$TEMPLATE_ID', $(basename "$FLAT"))"

  code=$(req GET "$base/rest/status" -H 'Accept: application/json')
  if [ "$code" = 200 ]; then ok "status: EHRbase $(jget 'd["ehrbase_version"]') on $(jget 'd["postgres_version"].split(" (")[0]')"
  else bad "GET /rest/status: expected 200, got $code"; return; fi

  # Upload twice: the second POST must replace (ehrbase.template.allow-overwrite=true), not 409.
  code=$(req POST "$B/definition/template/adl1.4" -H 'Content-Type: application/xml' --data-binary "@$OPT")
  case "$code" in 201|204) ok "upload OPT ($code, ETag $(etag))" ;; *) bad "upload OPT: expected 201, got $code" ;; esac
  code=$(req POST "$B/definition/template/adl1.4" -H 'Content-Type: application/xml' --data-binary "@$OPT")
  case "$code" in 201|204) ok "re-upload OPT overwrites ($code)" ;; *) bad "re-upload OPT: expected 201 (allow-overwrite), got $code" ;; esac
  code=$(req GET "$B/definition/template/adl1.4" -H 'Accept: application/json')
  if [ "$code" = 200 ] && python3 -c 'import json,sys; sys.exit(0 if any(t["template_id"]==sys.argv[2] for t in json.load(open(sys.argv[1]))) else 1)' "$TMP/body" "$TEMPLATE_ID"; then
    ok "template listed"
  else bad "template '$TEMPLATE_ID' not in GET definition/template/adl1.4 ($code)"; fi

  code=$(req POST "$B/ehr" -H 'Accept: application/json' -H 'Prefer: return=representation' -H 'Content-Type: application/json')
  ehr="$(etag)"
  if [ "$code" = 201 ] && [ -n "$ehr" ]; then ok "create EHR ($code, $ehr)"; else bad "create EHR: expected 201, got $code"; return; fi
  sys="$(jget 'd["system_id"]["value"]')"

  since="$(date -u -d '-2 seconds' +%Y-%m-%dT%H:%M:%S.000Z)"
  code=$(req POST "$B/ehr/$ehr/composition?templateId=$TID_Q&format=FLAT" \
    -H 'Content-Type: application/json' -H 'Accept: application/json' -H 'Prefer: return=representation' \
    --data-binary "@$FLAT")
  v1="$(etag)"; uid="${v1%%::*}"
  if [ "$code" = 201 ] && [[ "$v1" == *"::$sys::1" ]]; then ok "commit FLAT composition ($code, $v1)"
  else bad "commit FLAT composition: expected 201 and ETag uuid::$sys::1, got $code '$v1'"; return; fi

  code=$(req GET "$B/ehr/$ehr/composition/$uid" -H 'Accept: application/json')
  if [ "$code" = 200 ] && [ "$(jget 'd["_type"]')" = COMPOSITION ] && [ "$(jget 'd["uid"]["value"]')" = "$v1" ] \
     && [ "$(jget 'd["archetype_details"]["template_id"]["value"]')" = "$TEMPLATE_ID" ]; then
    ok "read back canonical JSON (uid $v1)"
  else bad "read canonical: expected 200 COMPOSITION uid $v1, got $code"; fi

  # Optimistic locking: If-Match carries the bare version uid (quotes make EHRbase answer 400).
  code=$(req PUT "$B/ehr/$ehr/composition/$uid?templateId=$TID_Q&format=FLAT" \
    -H 'Content-Type: application/json' -H 'Accept: application/json' -H 'Prefer: return=representation' \
    -H "If-Match: $v1" --data-binary "@$FLAT")
  v2="$(etag)"
  if [ "$code" = 200 ] && [ "$v2" = "$uid::$sys::2" ]; then ok "update with If-Match $v1 ($code, now $v2)"
  else bad "update with If-Match: expected 200 and ETag $uid::$sys::2, got $code '$v2'"; fi

  code=$(req PUT "$B/ehr/$ehr/composition/$uid?templateId=$TID_Q&format=FLAT" \
    -H 'Content-Type: application/json' -H 'Prefer: return=minimal' -H "If-Match: $v1" --data-binary "@$FLAT")
  expect "update with stale If-Match $v1 rejected" 412 "$code"

  # Change detection (real-servers.md A.6): WHERE on the DV_DATE_TIME, /value only in SELECT.
  python3 - "$since" >"$TMP/aql.json" <<'PY'
import json, sys
print(json.dumps({
  "q": "SELECT e/ehr_id/value AS ehr_id, c/uid/value AS version_uid,"
       " v/commit_audit/time_committed/value AS committed_at,"
       " v/commit_audit/change_type/value AS change_type,"
       " c/archetype_details/template_id/value AS template_id"
       " FROM EHR e CONTAINS VERSION v CONTAINS COMPOSITION c"
       " WHERE v/commit_audit/time_committed > $since"
       " ORDER BY v/commit_audit/time_committed ASC",
  "query_parameters": {"since": sys.argv[1]}, "offset": 0, "fetch": 1000}))
PY
  code=$(req POST "$B/query/aql" -H 'Content-Type: application/json' -H 'Accept: application/json' --data-binary "@$TMP/aql.json")
  if [ "$code" = 200 ] && python3 - "$TMP/body" "$ehr" "$uid::$sys::2" "$TEMPLATE_ID" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); ehr, vuid, tid = sys.argv[2:5]
rows = [r for r in d["rows"] if r[0] == ehr]
# Only the latest version of the composition is returned (LATEST_VERSION semantics).
sys.exit(0 if rows == [[ehr, vuid, rows[0][2], "modification", tid]] else 1) if rows else sys.exit(1)
PY
  then ok "AQL change query since $since returns only the latest version ($uid::$sys::2, modification)"
  else bad "AQL change query: expected 200 with one row for $uid::$sys::2, got $code"; fi

  if [ "${SMOKE_KEEP:-0}" != 1 ]; then
    code=$(req DELETE "$base/rest/admin/ehr/$ehr")
    expect "clean-up: admin DELETE EHR $ehr" 204 "$code"
  fi
}

targets=()
if [ $# -eq 0 ] || [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  for i in $(seq 1 "${1:-${CONFLICTDESK_SITES:-2}}"); do targets+=("http://127.0.0.1:$((8100 + i))/ehrbase"); done
else
  targets=("$@")
fi
for t in "${targets[@]}"; do smoke_site "${t%/}"; done
echo "ehrbase-smoke: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
