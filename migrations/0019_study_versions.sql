-- 0019_study_versions: versions of a study's result (issue 11, "instances arriving after completion
-- start a new version of the result that references its predecessor"). A study's version is the
-- input set one describe job works on. Once a job has claimed the study (processing, described,
-- exported, failed, expunged), that version's input set is fixed; a new instance arriving then opens
-- version N+1, whose draft SR names the version-N draft in its Predecessor Documents Sequence
-- (0040,A360; PS3.3 C.17.2.1) and gets a SOP Instance UID of its own. A new instance of a study
-- nobody has claimed yet (receiving, stable, queued) joins the current version. An identical resend
-- (same SOP Instance UID, same bytes) is no new instance and changes nothing (instance-store.ts).
-- The rule is StudyTransition.newVersion in src/ingest/study-lifecycle.ts; the trigger below holds it
-- for every writer (test/integration/study-lifecycle.int.test.ts compares the two tables).
-- Forward-only: never edit this file once merged.

-- Version 1 is the first input set; existing rows are version 1 (nothing recorded any other).
ALTER TABLE studies ADD COLUMN version integer NOT NULL DEFAULT 1 CHECK (version >= 1);

-- True on the transitions that open a new version: exactly the instance-received ones out of a
-- state in which a describe job had claimed the study.
ALTER TABLE study_state_transitions ADD COLUMN new_version boolean NOT NULL DEFAULT false;
UPDATE study_state_transitions SET new_version = true
 WHERE to_state = 'receiving' AND from_state IN ('processing', 'described', 'exported', 'failed', 'expunged');

-- The version starts at 1, changes only by +1 and only together with a new_version transition; a
-- new_version transition without the +1 is refused too (the state change would hide that the input
-- set changed after a job fixed it).
CREATE FUNCTION studies_version_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  opens boolean;
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.version <> 1 THEN
      RAISE EXCEPTION 'a study starts at version 1, not %', NEW.version
        USING ERRCODE = 'check_violation', CONSTRAINT = 'studies_version_transition';
    END IF;
    RETURN NEW;
  END IF;
  SELECT t.new_version INTO opens FROM study_state_transitions t
   WHERE t.from_state = OLD.state AND t.to_state = NEW.state;
  opens := coalesce(opens, false);
  IF opens AND NEW.version IS DISTINCT FROM OLD.version + 1 THEN
    RAISE EXCEPTION 'study state transition % -> % opens version %, not %', OLD.state, NEW.state,
      OLD.version + 1, NEW.version
      USING ERRCODE = 'check_violation', CONSTRAINT = 'studies_version_transition';
  END IF;
  IF NOT opens AND NEW.version IS DISTINCT FROM OLD.version THEN
    RAISE EXCEPTION 'study version % -> % is not allowed on % -> %', OLD.version, NEW.version, OLD.state, NEW.state
      USING ERRCODE = 'check_violation', CONSTRAINT = 'studies_version_transition';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER studies_version_trg BEFORE INSERT OR UPDATE OF state, version ON studies
  FOR EACH ROW EXECUTE FUNCTION studies_version_guard();
