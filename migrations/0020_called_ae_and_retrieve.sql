-- 0020_called_ae_and_retrieve: the local AE an instance was sent to (issue 11, DICOMweb per-AE
-- paths), and an audit kind for WADO-RS retrieves served by RadScribe.
-- called_ae_title: the Called AE Title of the C-STORE association (PS3.8 §9.3.2), or the {AET} of a
-- STOW-RS request to /dicomweb/aets/{AET}/studies: one local AE, reached by either protocol, so that
-- routing rules on the called AE (config routes[].match.calledAeTitle) treat both alike. NULL for
-- instances that reached no local AE (STOW-RS to /dicomweb/studies, WADO-RS retrieve, import) and
-- for rows stored before this migration (nothing recorded it).
-- instances-retrieved: a caller fetched instances with WADO-RS (PS3.18 §10.4), 110104 DICOM Instances
-- Transferred, action R (src/audit/audit-codes.ts). The kind set is AuditEventKind.
-- Forward-only: never edit this file once merged.
ALTER TABLE instances ADD COLUMN called_ae_title text
  CHECK (called_ae_title IS NULL OR (length(called_ae_title) BETWEEN 1 AND 16 AND called_ae_title = btrim(called_ae_title)));

ALTER TABLE audit_events DROP CONSTRAINT audit_events_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
  'instance-received', 'remote-query', 'remote-retrieve', 'study-queued', 'inference-run',
  'sr-exported', 'config-change', 'audit-query', 'application-start', 'application-stop',
  'instance-refused', 'instance-quarantined', 'study-deleted',
  'association-rejected', 'user-authentication', 'access-refused', 'security-configuration',
  'instances-retrieved'));
