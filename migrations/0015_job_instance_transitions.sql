-- 0015_job_instance_transitions: the job and instance lifecycles enforced in SQL, as 0005 did for
-- studies (issue 8: "illegal transitions are refused in SQL, not by convention. Same rule for jobs
-- and instances"). The job transitions are the `as const` set JOB_TRANSITIONS in src/jobs/types.ts
-- (the integration test compares them with the rows below); src/jobs/job-queue.ts is their only writer.
-- Forward-only: never edit this file once merged.

CREATE TABLE job_state_transitions (
  from_state text NOT NULL,
  to_state text NOT NULL,
  -- Which job-queue operation (src/jobs/job-queue.ts) makes it.
  via text NOT NULL,
  PRIMARY KEY (from_state, to_state),
  CHECK (from_state <> to_state)
);

INSERT INTO job_state_transitions (from_state, to_state, via) VALUES
  ('queued', 'running', 'claim'),
  ('queued', 'cancelled', 'cancel'),
  ('running', 'succeeded', 'complete'),
  ('running', 'queued', 'retry or lease reclaim'),
  ('running', 'failed', 'permanent failure, attempts used up, or lease reclaim');

-- A job starts as 'queued'; succeeded, failed and cancelled are terminal (a re-run is a new job).
CREATE FUNCTION jobs_state_transition_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.state <> 'queued' THEN
      RAISE EXCEPTION 'a job starts in state queued, not %', NEW.state
        USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_state_transition';
    END IF;
  ELSIF NEW.state IS DISTINCT FROM OLD.state AND NOT EXISTS (
      SELECT 1 FROM job_state_transitions t WHERE t.from_state = OLD.state AND t.to_state = NEW.state) THEN
    RAISE EXCEPTION 'job state transition % -> % is not allowed', OLD.state, NEW.state
      USING ERRCODE = 'check_violation', CONSTRAINT = 'jobs_state_transition';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER jobs_state_transition_trg BEFORE INSERT OR UPDATE OF state ON jobs
  FOR EACH ROW EXECUTE FUNCTION jobs_state_transition_guard();

-- An instance's lifecycle (src/ingest/instance-repository.ts is its only writer): stored ->
-- (decoding <-> stored) -> quarantined and/or deleted -> (a later receipt of the same SOP Instance
-- revives a deleted row: INSERT_INSTANCE's ON CONFLICT, the only way deleted_at goes back to NULL).
-- Outside a revival what was received never changes identity or content (UIDs, file, digest, size,
-- how and when it came); a quarantine is never undone; a deletion is never re-dated; a quarantined
-- or deleted instance is never decoded again.
CREATE FUNCTION instances_lifecycle_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  revival boolean := OLD.deleted_at IS NOT NULL AND NEW.deleted_at IS NULL;
BEGIN
  IF NOT revival AND
     (NEW.sop_instance_uid, NEW.study_instance_uid, NEW.series_instance_uid, NEW.sop_class_uid,
      NEW.transfer_syntax_uid, NEW.file_path, NEW.file_sha256, NEW.size_bytes, NEW.received_via, NEW.received_at)
     IS DISTINCT FROM
     (OLD.sop_instance_uid, OLD.study_instance_uid, OLD.series_instance_uid, OLD.sop_class_uid,
      OLD.transfer_syntax_uid, OLD.file_path, OLD.file_sha256, OLD.size_bytes, OLD.received_via, OLD.received_at) THEN
    RAISE EXCEPTION 'instance %: a received instance''s identity and content do not change', OLD.sop_instance_uid
      USING ERRCODE = 'check_violation', CONSTRAINT = 'instances_lifecycle';
  END IF;
  IF OLD.quarantined_at IS NOT NULL AND NEW.quarantined_at IS DISTINCT FROM OLD.quarantined_at THEN
    RAISE EXCEPTION 'instance %: a quarantine is not undone', OLD.sop_instance_uid
      USING ERRCODE = 'check_violation', CONSTRAINT = 'instances_lifecycle';
  END IF;
  IF OLD.deleted_at IS NOT NULL AND NOT revival AND NEW.deleted_at IS DISTINCT FROM OLD.deleted_at THEN
    RAISE EXCEPTION 'instance %: a deletion is not re-dated', OLD.sop_instance_uid
      USING ERRCODE = 'check_violation', CONSTRAINT = 'instances_lifecycle';
  END IF;
  IF NEW.decode_started_at IS NOT NULL AND OLD.decode_started_at IS NULL
     AND (OLD.quarantined_at IS NOT NULL OR NEW.deleted_at IS NOT NULL) THEN
    RAISE EXCEPTION 'instance %: a quarantined or deleted instance is not decoded', OLD.sop_instance_uid
      USING ERRCODE = 'check_violation', CONSTRAINT = 'instances_lifecycle';
  END IF;
  RETURN NEW;
END
$$;

CREATE TRIGGER instances_lifecycle_trg BEFORE UPDATE ON instances
  FOR EACH ROW EXECUTE FUNCTION instances_lifecycle_guard();
