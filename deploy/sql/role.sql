-- A login role with this password, created if missing (idempotent).
-- psql variables: role, pass. Run as a superuser on database postgres.
-- Used by deploy/postgres.sh (app), deploy/hapi-fhir.sh (hapi), deploy/ehrbase.sh
-- (ehrbase, ehrbase_restricted) and by docker-init.sh in the postgres container.
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', :'role', :'pass') \gexec
