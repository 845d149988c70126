-- 0010_audit_kinds_access_dimse: audit kinds for DIMSE associations (issue 11) and access control
-- (issue 12), added in one migration so that the issues' modules do not each rewrite the CHECK.
-- The set is AuditEventKind in src/audit/audit-codes.ts. Forward-only: never edit once merged.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
  'instance-received', 'remote-query', 'remote-retrieve', 'study-queued', 'inference-run',
  'sr-exported', 'config-change', 'audit-query', 'application-start', 'application-stop',
  'instance-refused', 'instance-quarantined', 'study-deleted',
  'association-rejected', 'user-authentication', 'access-refused', 'security-configuration'));
