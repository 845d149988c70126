-- 0005_study_lifecycle: the study lifecycle as a table the database enforces (issue 8: illegal
-- transitions are refused in SQL, not by convention). The states and the transitions are the
-- `as const` sets StudyState and STUDY_TRANSITIONS in src/ingest/study-lifecycle.ts; the
-- integration test compares them with the rows below.
-- Forward-only: never edit this file once merged.

-- New state set: 'stable' (window elapsed), 'described' (inference done) and 'exported' (the SR
-- went out; replaces 'done', which meant exactly that: the describe job succeeded).
ALTER TABLE studies DROP CONSTRAINT studies_state_check;
UPDATE studies SET state = 'exported' WHERE state = 'done';
ALTER TABLE studies ADD CONSTRAINT studies_state_check
  CHECK (state IN ('receiving', 'stable', 'queued', 'processing', 'described', 'exported', 'failed'));

-- The stability sweep reads receiving studies by age and stable ones waiting for a running job.
DROP INDEX studies_receiving_idx;
CREATE INDEX studies_settling_idx ON studies (last_received_at) WHERE state IN ('receiving', 'stable');

CREATE TABLE study_state_transitions (
  from_state text NOT NULL,
  to_state text NOT NULL,
  -- What causes it (StudyEvent in src/ingest/study-lifecycle.ts).
  event text NOT NULL,
  PRIMARY KEY (from_state, to_state),
  CHECK (from_state <> to_state)
);

INSERT INTO study_state_transitions (from_state, to_state, event) VALUES
  ('receiving', 'stable', 'window-elapsed'),
  ('receiving', 'queued', 'job-queued'),
  ('stable', 'queued', 'job-queued'),
  ('stable', 'receiving', 'instance-received'),
  ('queued', 'processing', 'job-claimed'),
  ('queued', 'failed', 'job-failed'),
  ('queued', 'receiving', 'instance-received'),
  ('processing', 'described', 'described'),
  ('processing', 'queued', 'job-retrying'),
  ('processing', 'failed', 'job-failed'),
  ('processing', 'receiving', 'instance-received'),
  ('described', 'exported', 'job-succeeded'),
  ('described', 'queued', 'job-retrying'),
  ('described', 'failed', 'job-failed'),
  ('described', 'receiving', 'instance-received'),
  ('exported', 'queued', 'job-queued'),
  ('exported', 'receiving', 'instance-received'),
  ('failed', 'queued', 'job-queued'),
  ('failed', 'receiving', 'instance-received');

-- A study starts as 'receiving'; afterwards its state changes only along study_state_transitions.
-- An UPDATE that leaves the state as it is (another instance of a receiving study) is no transition.
CREATE FUNCTION studies_state_transition_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'receiving' THEN
      RAISE EXCEPTION 'a study starts in state receiving, not %', NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'studies_state_transition';
    END IF;
  ELSIF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
      SELECT 1 FROM study_state_transitions t WHERE t.from_state = OLD.state AND t.to_state = NEW.state) THEN
    RAISE EXCEPTION 'study state transition % -> % is not allowed', OLD.state, NEW.state
      USING ERRCODE = 'check_violation', CONSTRAINT = 'studies_state_transition';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER studies_state_transition_trg BEFORE INSERT OR UPDATE OF state ON studies
  FOR EACH ROW EXECUTE FUNCTION studies_state_transition_guard();
