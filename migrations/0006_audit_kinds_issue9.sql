-- 0006_audit_kinds_issue9: audit kinds for refusals, quarantine and deletion (issue 9), added in one
-- migration so that later migrations do not each rewrite the CHECK. The set is AuditEventKind in
-- src/audit/audit-codes.ts; test/integration/audit.int.test.ts inserts one row of every kind.
-- Forward-only: never edit this file once merged.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
  'instance-received', 'remote-query', 'remote-retrieve', 'study-queued', 'inference-run',
  'sr-exported', 'config-change', 'audit-query', 'application-start', 'application-stop',
  'instance-refused', 'instance-quarantined', 'study-deleted'));
