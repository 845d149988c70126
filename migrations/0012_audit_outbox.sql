-- 0012_audit_outbox: durable outbox of the ATNA export (issue 12 "Export to the hospital"). The
-- outbox is audit_events itself (append-only, ids assigned in commit order under the chain lock of
-- 0002, so no event can later appear below an id already seen); this table holds, per destination,
-- the id of the last event handed to the repository. The exporter advances it right after each
-- write (src/audit/atna/audit-exporter.ts); on restart it resumes after it. Forward-only.
CREATE TABLE audit_export_cursor (
  -- Destination key: 'syslog-tls://host:port'.
  destination text PRIMARY KEY,
  -- Last audit_events.id written to the destination; 0 = nothing yet (the whole trail goes out).
  last_id bigint NOT NULL DEFAULT 0 CHECK (last_id >= 0),
  sent_count bigint NOT NULL DEFAULT 0,
  updated_at timestamptz NOT NULL DEFAULT now()
);
