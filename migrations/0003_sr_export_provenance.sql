-- Which model and which SR profile produced each exported instance, so that a re-run with a new
-- model version can reference its predecessor (PS3.3 C.17.2.1 Predecessor Documents Sequence),
-- and one SR may go to several destinations (the key becomes instance + destination).
ALTER TABLE sr_exports
  ADD COLUMN sop_class_uid text NULL,
  ADD COLUMN series_instance_uid text NULL,
  ADD COLUMN device_uid text NULL,
  ADD COLUMN object_kind text NOT NULL DEFAULT 'sr' CHECK (object_kind IN ('sr', 'pdf')),
  ADD COLUMN created_at timestamptz NOT NULL DEFAULT now();

ALTER TABLE sr_exports DROP CONSTRAINT sr_exports_pkey;
ALTER TABLE sr_exports ADD PRIMARY KEY (sop_instance_uid, destination);

-- Predecessor lookup: latest sent SR of the same class for a study at a destination.
CREATE INDEX sr_exports_predecessor_idx ON sr_exports (study_instance_uid, destination, sop_class_uid, sent_at DESC)
  WHERE state = 'sent';
