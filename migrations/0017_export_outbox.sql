-- 0017_export_outbox: the export ledger is also the outbox (issues 11 and 15). A describe-study job
-- stages its draft's Part 10 bytes here (SR and PDF companion) before it sends them; a retry of the
-- same job finds them and resends those bytes instead of running the model again, and a delivered
-- object's bytes are cleared (the PACS holds it now; only the ledger row stays).
-- `staged`: what a resend needs to rebuild the job result and audit detail (route, counts, tags of
-- normalised source attributes; UIDs and codes only). `delivery`: how the object arrived
-- (src/export/sr-destination.ts Delivery): sent now, or found at the destination with the same content.
-- Forward-only: never edit this file once merged.

ALTER TABLE sr_exports
  ADD COLUMN part10 bytea NULL,
  ADD COLUMN part10_sha256 text NULL,
  ADD COLUMN staged jsonb NULL,
  ADD COLUMN delivery text NULL CHECK (delivery IN ('stored', 'already-present-identical'));

-- A job's staged objects (SrExportLedger.stagedForJob).
CREATE INDEX sr_exports_job_idx ON sr_exports (job_id) WHERE staged IS NOT NULL;
