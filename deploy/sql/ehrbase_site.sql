-- An EHRbase site database prepared as EHRbase expects before its Flyway
-- migrations run: the steps that need a superuser. Every statement is idempotent.
-- psql variables: db, adm (schema owner, runs Flyway), usr (runtime role, DML only).
-- Run as a superuser connected to database :db (created by database.sql, owner :adm).
SELECT format('GRANT ALL PRIVILEGES ON DATABASE %I TO %I, %I', :'db', :'adm', :'usr') \gexec
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SELECT format('CREATE SCHEMA IF NOT EXISTS ehr AUTHORIZATION %I', :'adm') \gexec
SELECT format('GRANT USAGE ON SCHEMA ehr TO %I', :'usr') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA ehr GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', :'adm', :'usr') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA ehr GRANT SELECT ON SEQUENCES TO %I', :'adm', :'usr') \gexec
SELECT format('CREATE SCHEMA IF NOT EXISTS ext AUTHORIZATION %I', :'adm') \gexec
SELECT format('GRANT USAGE ON SCHEMA ext TO %I', :'usr') \gexec
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" SCHEMA ext;
SELECT format('ALTER DATABASE %I SET search_path TO ext', :'db') \gexec
SELECT format('ALTER DATABASE %I SET intervalstyle = %L', :'db', 'iso_8601') \gexec
-- EHRbase's AQL SQL relies on the planner assuming one row per call.
ALTER FUNCTION jsonb_path_query(jsonb, jsonpath, jsonb, boolean) ROWS 1;
