#!/usr/bin/env bash
# Smoke test of the HAPI FHIR server started by deploy/hapi-fhir.sh: proves the behaviours the
# sync engine relies on. Safe to re-run: every run uses fresh identifiers, and it only expunges
# resources it created itself.
# Usage: deploy/hapi-fhir-smoke.sh            (HAPI_BASE overrides http://127.0.0.1:8090/fhir)
source "$(dirname "$0")/common.sh"
apt_install curl jq

BASE="${HAPI_BASE:-http://127.0.0.1:8090/fhir}"
RUN="smoke-$(date +%s)-$RANDOM"
SYS="urn:conflictdesk:smoke"
PASS=0 FAIL=0
TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT

ok()   { PASS=$((PASS + 1)); printf 'ok   %s\n' "$*"; }
bad()  { FAIL=$((FAIL + 1)); printf 'FAIL %s\n' "$*"; }
check() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

# req METHOD PATH [BODY] [extra curl args...]: sets CODE, BODY (file $TMP/body), HDRS ($TMP/hdrs).
req() {
  local method="$1" path="$2" body="${3:-}"; shift 3 || shift $#
  local args=(-sS -m 60 -X "$method" -o "$TMP/body" -D "$TMP/hdrs" -w '%{http_code}'
              -H 'Accept: application/fhir+json' "$@")
  [ -n "$body" ] && args+=(-H 'Content-Type: application/fhir+json' --data-binary "$body")
  CODE="$(curl "${args[@]}" "$BASE$path")" || CODE=000
}
hdr() { grep -i "^$1:" "$TMP/hdrs" | tail -n1 | cut -d' ' -f2- | tr -d '\r'; }
jb()  { jq -r "$1" "$TMP/body"; }

curl -fsS -o /dev/null -m 10 "$BASE/metadata" || die "no FHIR server at $BASE (deploy/hapi-fhir.sh start)"
# Server clock (same machine) one second back: every change below is after it.
SINCE="$(date -u -d '-1 second' +%Y-%m-%dT%H:%M:%SZ)"
echo "# smoke run $RUN against $BASE (since $SINCE)"

# 1. create ------------------------------------------------------------------------------
patient() { # patient IDENTIFIER FAMILY [ID]
  jq -nc --arg sys "$SYS" --arg v "$1" --arg f "$2" --arg id "${3:-}" \
    '{resourceType:"Patient", identifier:[{system:$sys, value:$v}], name:[{family:$f}]}
     + (if $id == "" then {} else {id:$id} end)'
}
req POST /Patient "$(patient "$RUN-a" Alpha)"
PID="$(jb .id)"
check "create Patient -> 201, ETag W/\"1\" (id $PID)" \
  test "$CODE" = 201 -a "$(hdr ETag)" = 'W/"1"'

# 2. versioned update --------------------------------------------------------------------
req PUT "/Patient/$PID" "$(patient "$RUN-a" Beta "$PID")" -H 'If-Match: W/"1"'
check "update with If-Match W/\"1\" -> 200, ETag W/\"2\"" \
  test "$CODE" = 200 -a "$(hdr ETag)" = 'W/"2"'

req PUT "/Patient/$PID" "$(patient "$RUN-a" Gamma "$PID")" -H 'If-Match: W/"1"'
check "update with stale If-Match W/\"1\" -> 409 ($(jb '.issue[0].diagnostics' | cut -c1-60)...)" \
  test "$CODE" = 409
req GET "/Patient/$PID"
check "stale update wrote nothing (still version 2, family Beta)" \
  test "$(jb .meta.versionId)" = 2 -a "$(jb '.name[0].family')" = Beta

# client-assigned id (numeric: needs ClientIdStrategy ANY)
CID="$(date +%s%N | cut -c1-15)"
req PUT "/Patient/$CID" "$(patient "$RUN-c" ClientId "$CID")"
check "client-assigned numeric id PUT /Patient/$CID -> 201" test "$CODE" = 201

# 3. conditional create ------------------------------------------------------------------
req POST /Patient "$(patient "$RUN-cond" Cond)" -H "If-None-Exist: identifier=$SYS|$RUN-cond"
C1="$CODE" ID1="$(jb .id)"
req POST /Patient "$(patient "$RUN-cond" Cond)" -H "If-None-Exist: identifier=$SYS|$RUN-cond"
C2="$CODE" ID2="$(jb .id)"
check "conditional create twice -> $C1 then $C2, same id ($ID1)" \
  test "$C1" = 201 -a "$C2" = 200 -a "$ID1" = "$ID2" -a -n "$ID1"

# conditional update (upsert by identifier)
req PUT "/Patient?identifier=$SYS|$RUN-cond" "$(patient "$RUN-cond" CondUpdated)"
check "conditional update by identifier -> 200 on the same id" \
  test "$CODE" = 200 -a "$(jb .id)" = "$ID1"

# search freshness: the identical search right after a write must see it (no 60 s cache)
req GET "/Patient?identifier=$SYS|$RUN-fresh"
F0="$(jb '.entry | length')"
req POST /Patient "$(patient "$RUN-fresh" Fresh)"
req GET "/Patient?identifier=$SYS|$RUN-fresh"
check "identical search before/after a write -> $F0 then $(jb '.entry | length') (search cache off)" \
  test "$F0" = 0 -a "$(jb '.entry | length')" = 1

# writes in any order: a reference to a missing Patient creates a placeholder; external refs ok
req POST /Observation "$(jq -nc --arg r "Patient/$RUN-missing" '{resourceType:"Observation",status:"final",
  code:{text:"smoke"}, subject:{reference:$r}, performer:[{reference:"http://example.org/fhir/Practitioner/1"}]}')"
OCODE="$CODE"
req GET "/Patient/$RUN-missing"
check "Observation -> missing Patient/$RUN-missing + external ref -> $OCODE; placeholder Patient exists ($CODE)" \
  test "$OCODE" = 201 -a "$CODE" = 200

# 4. transaction with urn:uuid references ------------------------------------------------
TX="$(jq -nc --arg sys "$SYS" --arg v "$RUN-tx" '{
  resourceType:"Bundle", type:"transaction", entry:[
    {fullUrl:"urn:uuid:0b6a7d0e-0000-4000-8000-000000000001",
     resource:{resourceType:"Patient", identifier:[{system:$sys, value:$v}]},
     request:{method:"POST", url:"Patient", ifNoneExist:("identifier=" + $sys + "|" + $v)}},
    {fullUrl:"urn:uuid:0b6a7d0e-0000-4000-8000-000000000002",
     resource:{resourceType:"Observation", status:"final",
               code:{coding:[{system:"http://loinc.org", code:"8867-4", display:"Heart rate"}]},
               subject:{reference:"urn:uuid:0b6a7d0e-0000-4000-8000-000000000001"},
               valueQuantity:{value:72, unit:"/min", system:"http://unitsofmeasure.org", code:"/min"}},
     request:{method:"POST", url:"Observation"}}]}')"
req POST "" "$TX"
TXPAT="$(jb '.entry[0].response.location' | cut -d/ -f1-2)"
TXOBS="$(jb '.entry[1].response.location' | cut -d/ -f1-2)"
check "transaction bundle (urn:uuid refs) -> 200, 2 x 201 ($TXPAT, $TXOBS)" \
  test "$CODE" = 200 -a "$(jb '[.entry[].response.status | startswith("201")] | all')" = true
req GET "/$TXOBS"
check "urn:uuid reference rewritten to $TXPAT" test "$(jb .subject.reference)" = "$TXPAT"

# 5. a transaction with one bad entry writes nothing --------------------------------------
BADTX="$(jq -nc --arg sys "$SYS" --arg v "$RUN-rollback" --arg pid "$PID" '{
  resourceType:"Bundle", type:"transaction", entry:[
    {fullUrl:"urn:uuid:0b6a7d0e-0000-4000-8000-000000000003",
     resource:{resourceType:"Patient", identifier:[{system:$sys, value:$v}]},
     request:{method:"POST", url:"Patient"}},
    {resource:{resourceType:"Patient", id:$pid, name:[{family:"ShouldNotExist"}]},
     request:{method:"PUT", url:("Patient/" + $pid), ifMatch:"W/\"1\""}}]}')"
req POST "" "$BADTX"
BADCODE="$CODE"
req GET "/Patient?identifier=$SYS|$RUN-rollback&_total=accurate"
N_ROLLBACK="$(jb .total)"
req GET "/Patient/$PID"
check "transaction with a stale ifMatch entry -> $BADCODE; nothing written (total $N_ROLLBACK, Patient/$PID still v$(jb .meta.versionId))" \
  test "$BADCODE" = 409 -a "$N_ROLLBACK" = 0 -a "$(jb .meta.versionId)" = 2

# 6. history with _since -----------------------------------------------------------------
req GET "/Patient/$PID/_history?_since=$SINCE"
check "instance _history?_since -> versions 2,1" \
  test "$(jb '[.entry[].resource.meta.versionId] | join(",")')" = "2,1"
req GET "/Patient/_history?_since=$SINCE&_count=500"
check "type _history?_since contains Patient/$PID" \
  test "$(jb "[.entry[].resource.id] | index(\"$PID\") != null")" = true
req GET "/_history?_since=$SINCE&_count=500"
check "system _history?_since contains Patient/$PID and $TXOBS" \
  test "$(jb "[.entry[].fullUrl] | (map(endswith(\"/Patient/$PID\")) | any) and (map(endswith(\"/$TXOBS\")) | any)")" = true
# A delete shows up in the change feed as an entry without resource, request DELETE.
req DELETE "/Patient/$CID"
req GET "/_history?_since=$SINCE&_count=500"
check "system _history shows the delete of Patient/$CID" \
  test "$(jb "[.entry[] | select(.fullUrl | endswith(\"/Patient/$CID\")) | .request.method] | index(\"DELETE\") != null")" = true

# 7. $validate ---------------------------------------------------------------------------
# Claims the base R4 vitalsigns heart-rate profile but lacks category/subject/effective[x].
OBS='{"resourceType":"Observation",
  "meta":{"profile":["http://hl7.org/fhir/StructureDefinition/heartrate"]},
  "status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},
  "valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}'
req POST '/Observation/$validate' "$OBS"
NERR="$(jb '[.issue[] | select(.severity=="error")] | length')"
check "\$validate Observation -> $CODE (HAPI answers 200 even with errors) OperationOutcome with $NERR error(s) against vitalsigns/heartrate" \
  test "$(jb .resourceType)" = OperationOutcome -a "$NERR" -gt 0
jq -r '.issue[] | select(.severity=="error") | "       - \(.diagnostics | .[0:110])"' "$TMP/body" | head -n 4
req POST '/Observation/$validate' "$(jq -c 'del(.meta)' <<<"$OBS")"
check "\$validate on the same Observation without the profile -> 200, no errors" \
  test "$CODE" = 200 -a "$(jb '[.issue[] | select(.severity=="error")] | length')" = 0

# 8. concurrency -------------------------------------------------------------------------
# 8 writers race with the same If-Match: exactly one wins, the rest get 409.
req POST /Patient "$(patient "$RUN-race" Race)"
RID="$(jb .id)"
seq 1 8 | xargs -P 8 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -m 60 -X PUT \
  -H 'Content-Type: application/fhir+json' -H 'If-Match: W/"1"' \
  --data-binary "$(patient "$RUN-race" Racer "$RID")" "$BASE/Patient/$RID" | sort | uniq -c >"$TMP/race"
check "8 concurrent If-Match W/\"1\" updates -> $(tr -s ' \n' ' ' <"$TMP/race")(one 200)" \
  test "$(awk '$2==200{print $1}' "$TMP/race")" = 1 -a "$(awk '$2==409{print $1}' "$TMP/race")" = 7
# 8 concurrent conditional creates: without the retry header losers may get 409; with it all
# succeed (one 201, the rest 200) and exactly one resource exists.
seq 1 8 | xargs -P 8 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -m 60 -X POST \
  -H 'Content-Type: application/fhir+json' -H "If-None-Exist: identifier=$SYS|$RUN-cc" \
  -H 'X-Retry-On-Version-Conflict: retry; max-retries=10' \
  --data-binary "$(patient "$RUN-cc" Concurrent)" "$BASE/Patient" | sort | uniq -c >"$TMP/cc"
req GET "/Patient?identifier=$SYS|$RUN-cc&_total=accurate"
check "8 concurrent conditional creates (X-Retry-On-Version-Conflict) -> $(tr -s ' \n' ' ' <"$TMP/cc"); $(jb .total) resource" \
  test "$(awk '$2==201{print $1}' "$TMP/cc")" = 1 -a "$(awk '$2==200{print $1}' "$TMP/cc")" = 7 -a "$(jb .total)" = 1

# 9. expunge (clean-up of what this run created) -------------------------------------------
req DELETE "/Patient/$PID"
req POST "/Patient/$PID/\$expunge" \
  '{"resourceType":"Parameters","parameter":[{"name":"expungeDeletedResources","valueBoolean":true},{"name":"expungePreviousVersions","valueBoolean":true}]}'
EXP="$CODE"
req GET "/Patient/$PID/_history"
check "DELETE + \$expunge Patient/$PID -> $EXP, its history is gone ($CODE)" \
  test "$EXP" = 200 -a "$CODE" = 404

# 10. MDM (deploy/hapi-fhir/mdm-rules.json) ----------------------------------------------
# One person at two sites (a typo in the second family name) -> one golden record (MATCH);
# another person with the same name, birth date and sex elsewhere -> POSSIBLE_MATCH for a steward;
# a Patient without demographics -> not matched at all. Names and birth date are fresh per run.
FAMILY="Smokerow$(( RANDOM % 9000 + 1000 ))"
BIRTH="19$(( RANDOM % 40 + 10 ))-0$(( RANDOM % 9 + 1 ))-1$(( RANDOM % 9 ))"
person() { # person SYSTEM MRN FAMILY POSTAL
  jq -nc --arg sys "$1" --arg v "$2" --arg f "$3" --arg b "$BIRTH" --arg pc "$4" \
    '{resourceType:"Patient", identifier:[{system:$sys, value:$v}], name:[{family:$f, given:["Margit"]}],
      birthDate:$b, gender:"female", address:[{postalCode:$pc}]}'
}
req POST /Patient "$(person "$SYS:site1:mrn" "$RUN-m1" "$FAMILY" 8001)"; M1="$(jb .id)"
req POST /Patient "$(person "$SYS:site2:mrn" "$RUN-m2" "${FAMILY/row/rov}" 8001)"; M2="$(jb .id)"
req POST /Patient "$(person "$SYS:site3:mrn" "$RUN-m3" "$FAMILY" 3000)"; M3="$(jb .id)"
req POST /Patient "$(patient "$RUN-m4" "")"; M4="$(jb .id)"
links() { # links PATIENT_ID -> "MATCHRESULT golden" lines (MDM matches asynchronously: poll)
  req GET "/\$mdm-query-links?resourceId=Patient/$1"
  jq -r '.parameter[]? | select(.name=="link") | [.part[] | {(.name): .valueString}] | add
         | "\(.matchResult) \(.goldenResourceId)"' "$TMP/body"
}
for _ in $(seq 1 60); do
  [ -n "$(links "$M1")" ] && [ -n "$(links "$M2")" ] && [ -n "$(links "$M3")" ] && break
  sleep 0.5
done
L1="$(links "$M1")" L2="$(links "$M2")" L3="$(links "$M3")"
check "MDM: typo at a second site -> MATCH to the same golden record ($L1 / $L2)" \
  test "${L1%% *}" = MATCH -a "${L2%% *}" = MATCH -a "${L1#* }" = "${L2#* }"
check "MDM: same name, birth date and sex, other postal code -> POSSIBLE_MATCH, not merged ($L3)" \
  test "${L3%% *}" = POSSIBLE_MATCH -a "${L3#* }" = "${L1#* }"
req GET "/${L1#* }"
check "MDM: the golden record is tagged GOLDEN_RECORD and carries the demographics" \
  test "$(jb '[.meta.tag[]?.code] | index("GOLDEN_RECORD") != null')" = true -a "$(jb .birthDate)" = "$BIRTH"
check "MDM: a Patient without demographics is not matched (no link)" test -z "$(links "$M4")"
# Clean-up that is also a check: deleting the registrations takes their links and the golden record
# with them (so repeated smoke runs leave no possible matches on a steward's page).
for m in "$M1" "$M2" "$M3" "$M4"; do req DELETE "/Patient/$m"; done
req GET "/${L1#* }"
check "MDM: the registrations deleted -> no links left, golden record gone ($CODE)" \
  test -z "$(links "$M1")$(links "$M2")$(links "$M3")" -a "$CODE" != 200

printf '%d passed, %d failed\n' "$PASS" "$FAIL"
[ "$FAIL" -eq 0 ]
