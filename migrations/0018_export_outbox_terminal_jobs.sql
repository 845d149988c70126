-- 0018_export_outbox_terminal_jobs: a job that ends for good (failed: attempts used up or a
-- permanent error; cancelled) drops the Part 10 bytes it staged in the outbox (migration 0017).
-- Why: those bytes are a copy of the draft SR and its PDF — PHI — kept only so that a retry of the
-- same job resends them instead of running the model again; a terminal job has no retry, and no
-- retention rule would ever remove them. The ledger row stays (state, error, audit detail), and a
-- later replay runs the model again (greedy decoding gives the same text for the same inputs).
-- In SQL, so no code path that ends a job (worker, lease reclaim, CLI, operator) can forget it.
-- Forward-only: never edit this file once merged.

CREATE FUNCTION sr_exports_drop_staged_bytes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  UPDATE sr_exports SET part10 = NULL WHERE job_id = NEW.id AND part10 IS NOT NULL;
  RETURN NULL;
END
$$;

CREATE TRIGGER jobs_terminal_drops_staged_trg AFTER UPDATE OF state ON jobs
  FOR EACH ROW WHEN (NEW.state IN ('failed', 'cancelled') AND OLD.state IS DISTINCT FROM NEW.state)
  EXECUTE FUNCTION sr_exports_drop_staged_bytes();
