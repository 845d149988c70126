-- 0002_audit: tamper-evident audit trail (reference/dicom-sr-and-audit.md §5; DICOM PS3.15 A.5).
-- The trail is a table, not a log stream (STYLE §2.6). Rows are append-only and hash-chained:
--   row_hash = sha256(prev_hash || audit_event_canonical(row))
-- so any UPDATE/DELETE made with triggers disabled breaks the chain at that row, and
-- src/audit/audit-log.ts verifyAuditChain() reports the first broken id. A DB superuser can still
-- rewrite the whole chain; anchoring the head outside the database is out of scope here (§5).

CREATE SEQUENCE audit_events_id_seq;

CREATE TABLE audit_events (
  -- Assigned by the BEFORE INSERT trigger *after* it takes the chain lock, so id order is chain order.
  id bigint PRIMARY KEY,
  occurred_at timestamptz NOT NULL,
  kind text NOT NULL CHECK (kind IN (
    'instance-received', 'remote-query', 'remote-retrieve', 'study-queued', 'inference-run',
    'sr-exported', 'config-change', 'audit-query', 'application-start', 'application-stop')),
  -- PS3.15 A.5.1 EventID / EventTypeCode (scheme DCM) and EventActionCode.
  event_id text NOT NULL,
  event_type_code text NULL,
  action_code text NOT NULL CHECK (action_code IN ('C', 'R', 'U', 'D', 'E')),
  -- PS3.15 A.5.1 EventOutcomeIndicator: 0 success, 4 minor, 8 serious, 12 major failure.
  outcome smallint NOT NULL DEFAULT 0 CHECK (outcome IN (0, 4, 8, 12)),
  actor text NULL,
  source text NULL,
  destination text NULL,
  study_instance_uid text NULL,
  sop_instance_uids text[] NULL,
  -- UIDs, hashes, counts and codes only: never PHI or model text.
  detail jsonb NOT NULL DEFAULT '{}'::jsonb,
  prev_hash text NOT NULL,
  row_hash text NOT NULL
);
ALTER SEQUENCE audit_events_id_seq OWNED BY audit_events.id;
CREATE INDEX audit_events_occurred_idx ON audit_events (occurred_at);
CREATE INDEX audit_events_study_idx ON audit_events (study_instance_uid) WHERE study_instance_uid IS NOT NULL;

-- Canonical text of a row. jsonb output is deterministic (sorted keys, fixed number format) and the
-- timestamp is rendered in UTC explicitly, so the text does not depend on the session TimeZone or
-- on the server version (same on PostgreSQL 15 and PGlite / PostgreSQL 18).
CREATE FUNCTION audit_event_canonical(e audit_events) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
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
  )::text
$$;

CREATE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  head text;
BEGIN
  -- Serialise appends for the rest of this transaction (key 0x52534155 = 'RSAU'): the next writer
  -- waits until we commit, then sees our row as the chain head (READ COMMITTED takes a fresh
  -- snapshot per statement inside a volatile plpgsql function).
  PERFORM pg_advisory_xact_lock(1381187925);
  SELECT a.row_hash INTO head FROM audit_events a ORDER BY a.id DESC LIMIT 1;
  NEW.id := nextval('audit_events_id_seq');
  NEW.occurred_at := clock_timestamp();
  NEW.prev_hash := coalesce(head, repeat('0', 64));
  NEW.row_hash := encode(sha256(convert_to(NEW.prev_hash || audit_event_canonical(NEW), 'UTF8')), 'hex');
  RETURN NEW;
END
$$;

CREATE TRIGGER audit_events_chain_trg BEFORE INSERT ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

CREATE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_events_no_update_delete_trg BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate_trg BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
