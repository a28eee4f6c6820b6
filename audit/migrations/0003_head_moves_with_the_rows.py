"""The chain head moves only with the rows: the database moves it, the application cannot.

Two functions owned by the migration role (SECURITY DEFINER, so they work
for an application role that has no UPDATE on the head table):

* ``audit_lock_head(partition)`` locks a partition's head row, creating it at
  the genesis on first use, and returns (seq, hash): the sequencer every
  append takes first;
* ``audit_move_head()``, a statement trigger after INSERT on the events,
  checks that the new rows continue their partition's head without a gap or
  a fork (seq = head + 1, prev_hash = head hash, each row linked to the one
  before) and moves the head to the last of them. The row hashes themselves
  are checked by ``audit_verify``; this makes the head a consequence of the
  rows, so rewinding it needs the owner's privileges.

Which role may do what is granted after every migrate (``audit.db_roles``).
"""
from django.db import migrations

GENESIS = "0" * 64  # audit.chain.GENESIS, frozen here

FUNCTIONS = rf"""
CREATE FUNCTION audit_lock_head(p_partition text) RETURNS TABLE (out_seq bigint, out_hash varchar)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT h.seq, h.hash FROM audit_audithead h WHERE h.partition = p_partition FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO audit_audithead (partition, seq, hash) VALUES (p_partition, 0, '{GENESIS}')
            ON CONFLICT DO NOTHING;
        RETURN QUERY SELECT h.seq, h.hash FROM audit_audithead h WHERE h.partition = p_partition FOR UPDATE;
    END IF;
END
$$;

CREATE FUNCTION audit_move_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp AS $$
DECLARE
    part record;
    head record;
BEGIN
    IF EXISTS (SELECT 1 FROM added a JOIN added b ON b.partition = a.partition
                AND b.partition_seq = a.partition_seq + 1 WHERE b.prev_hash <> a.hash) THEN
        RAISE EXCEPTION 'audit chain: appended rows do not link to each other'
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    FOR part IN SELECT a.partition, min(a.partition_seq) AS lo, max(a.partition_seq) AS hi, count(*) AS n
                  FROM added a GROUP BY a.partition ORDER BY a.partition LOOP
        SELECT h.seq, h.hash INTO head FROM audit_audithead h WHERE h.partition = part.partition FOR UPDATE;
        IF NOT FOUND OR part.lo <> head.seq + 1 OR part.hi - part.lo + 1 <> part.n
           OR (SELECT a.prev_hash FROM added a WHERE a.partition = part.partition AND a.partition_seq = part.lo)
              IS DISTINCT FROM head.hash THEN
            RAISE EXCEPTION 'audit chain %: an append must continue the head', part.partition
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        UPDATE audit_audithead h
           SET seq = part.hi,
               hash = (SELECT a.hash FROM added a WHERE a.partition = part.partition AND a.partition_seq = part.hi)
         WHERE h.partition = part.partition;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER audit_auditevent_moves_head AFTER INSERT ON audit_auditevent
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION audit_move_head();

REVOKE ALL ON FUNCTION audit_lock_head(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_move_head() FROM PUBLIC;
REVOKE ALL ON FUNCTION audit_refuse_change() FROM PUBLIC;
"""

REVERSE = """
DROP TRIGGER audit_auditevent_moves_head ON audit_auditevent;
DROP FUNCTION audit_move_head();
DROP FUNCTION audit_lock_head(text);
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_append_only")]
    operations = [migrations.RunSQL(FUNCTIONS, REVERSE)]
