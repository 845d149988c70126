-- 0009_retention: retention of received instances (issue 9). After a study's draft went out (or it
-- failed, if a rule says so), retention removes the files of its instances; the rows stay, marked,
-- and the study moves to the new terminal state 'expunged'. The audit trail is never deleted (the
-- triggers of 0002 refuse it anyway); each deletion is itself an audit event ('study-deleted', 0006).
-- The states and transitions match StudyState / STUDY_TRANSITIONS in src/ingest/study-lifecycle.ts
-- (test/integration/study-lifecycle.int.test.ts compares them).
-- Forward-only: never edit this file once merged.

-- 'expunged': the study's received instances were removed by retention. A new instance of the
-- study re-opens it (expunged → receiving), like any other completed study.
ALTER TABLE studies DROP CONSTRAINT studies_state_check;
ALTER TABLE studies ADD CONSTRAINT studies_state_check
  CHECK (state IN ('receiving', 'stable', 'queued', 'processing', 'described', 'exported', 'failed', 'expunged'));

INSERT INTO study_state_transitions (from_state, to_state, event) VALUES
  ('exported', 'expunged', 'retention-expired'),
  ('failed', 'expunged', 'retention-expired'),
  ('expunged', 'receiving', 'instance-received');

-- When retention removed the instance's file; NULL while the file is held. The row is kept (who sent
-- what, and its digest, stay answerable), and a later receipt of the same SOP Instance UID revives it.
ALTER TABLE instances ADD COLUMN deleted_at timestamptz NULL;
-- Pipeline reads and retention scan live instances of a study.
CREATE INDEX instances_live_study_idx ON instances (study_instance_uid) WHERE deleted_at IS NULL;

-- Retention looks for completed studies by the time they entered their state.
CREATE INDEX studies_retention_idx ON studies (updated_at) WHERE state IN ('exported', 'failed');
