-- 0014_audit_tamper_evidence: the application's role may only append to and read the audit trail,
-- the patient participant object gets a column, and the compliance queries (issue 12 "Queries for
-- compliance staff") get one index each. Forward-only: never edit this file once merged.

-- Roles are cluster-wide and this migration runs once per schema (the tests run many schemas at
-- once), so creation is idempotent and tolerates a concurrent creator. Both are NOLOGIN group
-- roles: the operator grants membership to the login role the gateway connects with
-- (`GRANT radscribe_app TO radscribe_gateway`), and to the compliance staff's own logins.
--   radscribe_app     — everything the gateway needs; on audit_events only INSERT and SELECT.
--   radscribe_auditor — SELECT on audit_events only (audit read and export, issue 12 roles).
-- Migrations themselves run as the schema owner, which is neither role.
DO $$
DECLARE
  r text;
  s text := current_schema();
BEGIN
  FOREACH r IN ARRAY ARRAY['radscribe_app', 'radscribe_auditor'] LOOP
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
      BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
      EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL; -- created by a concurrent migration of another schema
      END;
    END IF;
  END LOOP;
  EXECUTE format('GRANT USAGE ON SCHEMA %I TO radscribe_app, radscribe_auditor', s);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO radscribe_app', s);
  EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO radscribe_app', s);
  -- Tables of later migrations (created by the same owner) get the same grants.
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO radscribe_app', s);
  EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO radscribe_app', s);
END
$$;

-- Append-only for the application (issue 12 "Tamper evidence"): no UPDATE, DELETE, TRUNCATE,
-- REFERENCES or TRIGGER. The triggers of 0002 refuse UPDATE/DELETE/TRUNCATE for everyone else
-- short of a superuser or the owner, who can disable them; what those can do is bounded by the
-- anchors (src/audit/audit-anchor.ts) and caught by `radscribe audit verify --anchors`.
REVOKE ALL ON audit_events FROM PUBLIC;
REVOKE ALL ON audit_events FROM radscribe_app;
GRANT SELECT, INSERT ON audit_events TO radscribe_app;
GRANT SELECT ON audit_events TO radscribe_auditor;
-- The chain trigger runs as the inserting role and takes the id from this sequence.
REVOKE ALL ON SEQUENCE audit_events_id_seq FROM radscribe_app;
GRANT USAGE ON SEQUENCE audit_events_id_seq TO radscribe_app;

-- PS3.15 A.5.3 participant object "Patient" (Patient ID), for the compliance question "who read
-- this patient's data". Access to the trail is itself audited (110101 Audit Log Used).
ALTER TABLE audit_events ADD COLUMN patient_id text NULL;

-- The canonical text gains patient_id only when it is set, so every row written before this
-- migration keeps the text (and hash) it was chained with. src/audit/audit-canonical.ts computes
-- the same text in application code; `audit verify` never calls this function.
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
  ) || CASE WHEN e.patient_id IS NULL THEN '{}'::jsonb ELSE jsonb_build_object('patient_id', e.patient_id) END)::text
$$;

-- One index per compliance filter, each ending in the keyset order (occurred_at, id) that
-- src/audit/audit-query.ts pages by, so "this filter, this time range, newest first" is one index
-- range scan without a sort (test/integration/audit-query-plan.int.test.ts reads the plans).
DROP INDEX audit_events_occurred_idx;
DROP INDEX audit_events_study_idx;
CREATE INDEX audit_events_time_idx ON audit_events (occurred_at, id);
CREATE INDEX audit_events_kind_time_idx ON audit_events (kind, occurred_at, id);
CREATE INDEX audit_events_outcome_time_idx ON audit_events (outcome, occurred_at, id);
CREATE INDEX audit_events_actor_time_idx ON audit_events (actor, occurred_at, id) WHERE actor IS NOT NULL;
CREATE INDEX audit_events_source_time_idx ON audit_events (source, occurred_at, id) WHERE source IS NOT NULL;
CREATE INDEX audit_events_patient_time_idx ON audit_events (patient_id, occurred_at, id) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_events_study_time_idx ON audit_events (study_instance_uid, occurred_at, id)
  WHERE study_instance_uid IS NOT NULL;
