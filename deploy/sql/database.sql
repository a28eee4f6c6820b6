-- A UTF-8 database with C collation owned by a role, created if missing (idempotent).
-- psql variables: db, owner. Run as a superuser on database postgres.
-- CREATE DATABASE cannot run in a transaction block, hence \gexec, not DO.
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L LC_COLLATE %L LC_CTYPE %L TEMPLATE template0',
              :'db', :'owner', 'UTF8', 'C', 'C')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
