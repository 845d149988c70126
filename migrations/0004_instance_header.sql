-- 0004_instance_header: what the pipeline needs from each instance's header, stored once at
-- receipt (issue 8: "parse each received file once"; frame selection reads rows, not files).
-- Filled by src/ingest/instance-store.ts from the streaming header read; the columns are the
-- InstanceHeader fields of src/ingest/types.ts:
--   instance_number             Instance Number (0020,0013)             PS3.3 C.7.6.1
--   series_number               Series Number (0020,0011)               PS3.3 C.7.3.1
--   number_of_frames            Number of Frames (0028,0008), 1 if none PS3.3 C.7.6.6
--   pixel_rows, pixel_columns   Rows (0028,0010), Columns (0028,0011)   PS3.3 C.7.6.3
--   photometric_interpretation  (0028,0004)                             PS3.3 C.7.6.3
--   body_part_examined          (0018,0015)                             PS3.3 C.7.3.1
--   series_description          (0008,103E)                             PS3.3 C.7.3.1
--   specific_character_set      (0008,0005), values joined by '\'      PS3.3 C.12.1
--   has_pixel_data              (Float/Double Float) Pixel Data present PS3.3 C.7.6.3
--   header_read                 false only for rows stored before this migration: their files are
--                               read once at the next start (src/ingest/header-backfill.ts)
-- A migration cannot read files, so rows stored before it are backfilled by the gateway at start-up.
-- Forward-only: never edit this file once merged.
ALTER TABLE instances
  ADD COLUMN instance_number integer NULL,
  ADD COLUMN series_number integer NULL,
  ADD COLUMN number_of_frames integer NOT NULL DEFAULT 1 CHECK (number_of_frames >= 1),
  ADD COLUMN pixel_rows integer NULL,
  ADD COLUMN pixel_columns integer NULL,
  ADD COLUMN photometric_interpretation text NULL,
  ADD COLUMN body_part_examined text NULL,
  ADD COLUMN series_description text NULL,
  ADD COLUMN specific_character_set text NULL,
  ADD COLUMN has_pixel_data boolean NOT NULL DEFAULT false,
  ADD COLUMN header_read boolean NOT NULL DEFAULT false;
-- Existing rows keep false (to be backfilled); every row inserted from now on has its header read.
ALTER TABLE instances ALTER COLUMN header_read SET DEFAULT true;
CREATE INDEX instances_header_unread_idx ON instances (sop_instance_uid) WHERE NOT header_read;
