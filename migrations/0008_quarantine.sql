-- 0008_quarantine: poison instances are set aside after their first crash (issue 9).
-- An instance whose decoding broke a DICOM limit, crashed or killed the image-prep worker, or was in
-- flight when the job's process died, is quarantined: the pipeline reads only the study's other
-- instances from then on, and the quarantine is audited (kind 'instance-quarantined', 0006).
-- decode_started_at is written (committed) before the worker opens the file and cleared when it
-- answers, so a decode that takes the whole process down is still attributed to its instance when
-- the job is claimed again after the restart. Only src/ingest/instance-repository.ts writes these.
-- Forward-only: never edit this file once merged.
ALTER TABLE instances
  ADD COLUMN quarantined_at timestamptz,
  ADD COLUMN quarantine_reason text,
  ADD COLUMN decode_started_at timestamptz;
-- The set is QuarantineReason in src/ingest/types.ts.
ALTER TABLE instances ADD CONSTRAINT instances_quarantine_reason_check CHECK (
  quarantine_reason IN ('limit-exceeded', 'worker-out-of-memory', 'worker-crashed', 'timed-out',
                        'process-died-while-decoding'));
ALTER TABLE instances ADD CONSTRAINT instances_quarantine_consistent_check CHECK (
  (quarantined_at IS NULL) = (quarantine_reason IS NULL));
