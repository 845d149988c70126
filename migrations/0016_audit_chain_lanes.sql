-- 0016_audit_chain_lanes: the hash chain becomes 32 chains ("lanes") so that concurrent writers
-- do not queue on one lock (issue 12 "Concurrent writers are serialised on the chain without a
-- bottleneck you cannot measure"; the single chain gave 0.22× of plain inserts with 8 writers and
-- 0.12× with 32, because each append held the chain lock through its commit's WAL flush).
-- Forward-only: never edit this file once merged.
--
-- Each row belongs to one lane; within a lane rows are chained exactly as before
--   row_hash = sha256(prev_hash || audit_event_canonical(row))
-- with prev_hash the row_hash of the lane's previous row, and a lane's appends are serialised by
-- that lane's advisory lock, taken before the id, so id order within a lane is chain order and
-- every row of a lane with id ≤ its committed head is visible (what anchors rely on). A writer takes
-- the first free lane starting from its backend's own, so up to 32 transactions append at once.
-- Tamper evidence is per lane and as strong as before: an edited, inserted or deleted row breaks
-- its lane's links, and the signed anchors (format 2) name every lane's head and row count.
-- Rows written before this migration are lane 0, whose chain continues unchanged.

ALTER TABLE audit_events ADD COLUMN chain_lane smallint NOT NULL DEFAULT 0
  CHECK (chain_lane >= 0 AND chain_lane < 32);
-- The lane's head (ORDER BY id DESC LIMIT 1) for every append and every anchor.
CREATE INDEX audit_events_lane_idx ON audit_events (chain_lane, id);

-- The canonical text gains chain_lane only when it is not 0 (like patient_id in 0014), so every
-- row written before keeps its text and hash, and moving a row to another lane breaks its hash.
-- src/audit/audit-canonical.ts computes the same text; `audit verify` never calls this function.
CREATE OR REPLACE FUNCTION audit_event_canonical(e audit_events) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT (jsonb_build_object(
    'id', e.id,
    'occurred_at', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    'kind', e.kind,
    'event_id', e.event_id,
    'event_type_code', e.event_type_code,
    'action_code', e.action_code,
    'outcome', e.outcome,
    'actor', e.actor,
    'source', e.source,
    'destination', e.destination,
    'study_instance_uid', e.study_instance_uid,
    'sop_instance_uids', to_jsonb(e.sop_instance_uids),
    'detail', e.detail
  ) || CASE WHEN e.patient_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('patient_id', e.patient_id) END
    || CASE WHEN e.chain_lane = 0 THEN '{}'::jsonb ELSE jsonb_build_object('chain_lane', e.chain_lane) END)::text
$$;

CREATE OR REPLACE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  lanes constant int := 32;
  start int := pg_backend_pid() % lanes;
  lane int;
  head text;
BEGIN
  -- Lane locks (key 0x52534155 = 'RSAU', lane) are held to the end of the transaction. The loop
  -- tries every lane, so a transaction that already holds one (a second event in it) always gets
  -- a lane without waiting; a transaction waits only while it holds none, so waits form no cycle.
  FOR i IN 0 .. lanes - 1 LOOP
    IF pg_try_advisory_xact_lock(1381187925, (start + i) % lanes) THEN
      lane := (start + i) % lanes;
      EXIT;
    END IF;
  END LOOP;
  IF lane IS NULL THEN
    lane := start;
    PERFORM pg_advisory_xact_lock(1381187925, lane);
  END IF;
  -- READ COMMITTED: a fresh snapshot per statement inside a volatile plpgsql function, so the
  -- lane's previous holder's row is visible once we hold its lock.
  SELECT a.row_hash INTO head FROM audit_events a WHERE a.chain_lane = lane ORDER BY a.id DESC LIMIT 1;
  NEW.chain_lane := lane;
  NEW.id := nextval('audit_events_id_seq');
  NEW.occurred_at := clock_timestamp();
  NEW.prev_hash := coalesce(head, repeat('0', 64));
  NEW.row_hash := encode(sha256(convert_to(NEW.prev_hash || audit_event_canonical(NEW), 'UTF8')), 'hex');
  RETURN NEW;
END
$$;
