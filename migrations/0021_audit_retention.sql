-- 0021_audit_retention: retention of the audit trail (issue 12 "Retention: a configured period; old
-- partitions are exported (signed) and verified before they are dropped, without breaking
-- verification of what remains"). Forward-only: never edit this file once merged.
--
-- Segments are id ranges, not declarative partitions (docs/audit.md "Retention" says why: the
-- chain trigger assigns id and occurred_at after tuple routing, and DROP of a partition fires no
-- trigger that could force it through a recorded path). A segment (from_id, to_id] is dropped only
-- by audit_retention_drop() below, after src/audit/audit-retention.ts exported it to a signed
-- archive and verified the archive. The function deletes the rows, records every lane's base hash
-- (the hash of the lane's last dropped row, which the lane's first remaining row links to) and
-- writes the checkpoint: an 'audit-retention' event in the chain itself, in the same transaction.

ALTER TABLE audit_events DROP CONSTRAINT audit_events_kind_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_kind_check CHECK (kind IN (
  'instance-received', 'remote-query', 'remote-retrieve', 'study-queued', 'inference-run',
  'sr-exported', 'config-change', 'audit-query', 'application-start', 'application-stop',
  'instance-refused', 'instance-quarantined', 'study-deleted',
  'association-rejected', 'user-authentication', 'access-refused', 'security-configuration',
  'instances-retrieved', 'audit-retention'));

-- Where an emptied lane goes on from: the chain trigger links a lane's next row to base_hash when
-- the lane has no row left. A cache for the trigger only: `audit verify` takes the base hashes from
-- the checkpoint events (chained, anchored), never from here. Written only by audit_retention_drop().
CREATE TABLE audit_lane_base (
  lane smallint PRIMARY KEY CHECK (lane >= 0 AND lane < 32),
  base_hash text NOT NULL,
  -- The to_id of the segment that set it.
  upto_id bigint NOT NULL,
  -- Rows of the lane dropped so far: anchors count every row of a lane since its first, dropped or not.
  dropped bigint NOT NULL
);
REVOKE ALL ON audit_lane_base FROM PUBLIC;
DO $$
BEGIN
  -- 0014's default privileges gave the application role write access to every later table.
  EXECUTE 'REVOKE ALL ON audit_lane_base FROM radscribe_app';
  EXECUTE 'GRANT SELECT ON audit_lane_base TO radscribe_app, radscribe_auditor';
END
$$;

-- The chain trigger of 0016, with one change: an empty lane starts from its base hash, if it has one.
CREATE OR REPLACE FUNCTION audit_events_chain() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  lanes constant int := 32;
  start int := pg_backend_pid() % lanes;
  lane int;
  head text;
BEGIN
  FOR i IN 0 .. lanes - 1 LOOP
    IF pg_try_advisory_xact_lock(1381187925, (start + i) % lanes) THEN
      lane := (start + i) % lanes;
      EXIT;
    END IF;
  END LOOP;
  IF lane IS NULL THEN
    lane := start;
    PERFORM pg_advisory_xact_lock(1381187925, lane);
  END IF;
  NEW.chain_lane := lane;
  SELECT a.row_hash INTO head FROM audit_events a WHERE a.chain_lane = lane ORDER BY a.id DESC LIMIT 1;
  IF head IS NULL THEN
    SELECT b.base_hash INTO head FROM audit_lane_base b WHERE b.lane = NEW.chain_lane;
  END IF;
  NEW.id := nextval('audit_events_id_seq');
  NEW.occurred_at := clock_timestamp();
  NEW.prev_hash := coalesce(head, repeat('0', 64));
  NEW.row_hash := encode(sha256(convert_to(NEW.prev_hash || audit_event_canonical(NEW), 'UTF8')), 'hex');
  RETURN NEW;
END
$$;

-- The append-only trigger of 0002, with one exception: DELETE of rows inside the segment that
-- audit_retention_drop() is dropping in this transaction (it sets radscribe.audit_retention_range
-- for the transaction only). Only a role with DELETE on audit_events (the owner, a superuser) gets
-- this far at all, and those can disable the trigger anyway; the exception keeps the triggers on.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  range text := coalesce(current_setting('radscribe.audit_retention_range', true), '');
BEGIN
  IF TG_OP = 'DELETE' AND range <> ''
     AND OLD.id > split_part(range, ':', 1)::bigint AND OLD.id <= split_part(range, ':', 2)::bigint THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Drops the segment (p_from, p_to] and records it. p_lanes is what the verified archive says of each
-- lane in the segment: [{lane, count, firstId, lastId, prevHash, headHash}]; the rows are compared
-- with it under every lane's lock (no append of the segment can still be in flight), and nothing is
-- dropped unless they agree exactly. The segment must be the oldest one left (p_from the last
-- checkpoint's to_id, 0 at first), not hold the newest row, and be exported by every ATNA
-- destination (audit_export_cursor). p_archive names the archive and its
-- digests; it goes into the checkpoint event unchanged. Returns the checkpoint event's id.
-- SECURITY DEFINER: runs as the owner, the only role besides a superuser with DELETE on the table;
-- the application role may EXECUTE it and nothing else that deletes. search_path is pinned.
CREATE FUNCTION audit_retention_drop(p_from bigint, p_to bigint, p_lanes jsonb, p_archive jsonb, p_actor text)
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
DECLARE
  frontier bigint;
  newest bigint;
  actual jsonb;
  deleted bigint;
  rows_claimed bigint;
  l jsonb;
  checkpoint_id bigint;
BEGIN
  IF p_from IS NULL OR p_to IS NULL OR p_to <= p_from THEN
    RAISE EXCEPTION 'audit retention: empty segment (%, %]', p_from, p_to USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Wait for every append in flight: each holds its lane's lock to commit and takes its id under it.
  FOR i IN 0 .. 31 LOOP
    PERFORM pg_advisory_lock(1381187925, i);
    PERFORM pg_advisory_unlock(1381187925, i);
  END LOOP;
  -- One retention at a time (key 'RSAR').
  PERFORM pg_advisory_xact_lock(1381187922);
  SELECT coalesce(max((a.detail #>> '{segment,toId}')::bigint), 0) INTO frontier
    FROM audit_events a WHERE a.kind = 'audit-retention';
  IF p_from <> frontier THEN
    RAISE EXCEPTION 'audit retention: segment (%, %] is not the oldest left: the last checkpoint ends at %', p_from, p_to, frontier
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  SELECT max(a.id) INTO newest FROM audit_events a;
  IF newest IS NULL OR newest <= p_to THEN
    RAISE EXCEPTION 'audit retention: segment (%, %] holds the newest event', p_from, p_to USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- Never drop what the ATNA export (migration 0012) has not yet handed to a repository.
  IF EXISTS (SELECT 1 FROM audit_export_cursor c WHERE c.last_id < p_to) THEN
    RAISE EXCEPTION 'audit retention: segment (%, %] is not yet exported to %', p_from, p_to,
      (SELECT string_agg(c.destination, ', ') FROM audit_export_cursor c WHERE c.last_id < p_to)
      USING ERRCODE = 'object_not_in_prerequisite_state';
  END IF;
  IF EXISTS (SELECT 1 FROM audit_events a WHERE a.id <= p_from) THEN
    RAISE EXCEPTION 'audit retention: events at or below % are left from an earlier segment', p_from
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- What the rows say of each lane, in the archive's form.
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'lane', s.lane, 'count', s.n, 'firstId', s.first_id, 'lastId', s.last_id,
           'prevHash', f.prev_hash, 'headHash', h.row_hash) ORDER BY s.lane), '[]'::jsonb)
    INTO actual
    FROM (SELECT a.chain_lane AS lane, count(*) AS n, min(a.id) AS first_id, max(a.id) AS last_id
            FROM audit_events a WHERE a.id > p_from AND a.id <= p_to GROUP BY a.chain_lane) s
    JOIN audit_events f ON f.id = s.first_id
    JOIN audit_events h ON h.id = s.last_id;
  IF actual IS DISTINCT FROM (SELECT coalesce(jsonb_agg(x ORDER BY (x ->> 'lane')::int), '[]'::jsonb)
                                FROM jsonb_array_elements(p_lanes) x) THEN
    RAISE EXCEPTION 'audit retention: segment (%, %] does not match its archive (the database has %)', p_from, p_to, actual
      USING ERRCODE = 'data_exception';
  END IF;
  SELECT coalesce(sum((x ->> 'count')::bigint), 0) INTO rows_claimed FROM jsonb_array_elements(p_lanes) x;
  PERFORM set_config('radscribe.audit_retention_range', p_from || ':' || p_to, true);
  DELETE FROM audit_events a WHERE a.id > p_from AND a.id <= p_to;
  GET DIAGNOSTICS deleted = ROW_COUNT;
  PERFORM set_config('radscribe.audit_retention_range', '', true);
  IF deleted <> rows_claimed THEN
    RAISE EXCEPTION 'audit retention: deleted % events, the archive has %', deleted, rows_claimed USING ERRCODE = 'data_exception';
  END IF;
  FOR l IN SELECT * FROM jsonb_array_elements(p_lanes) LOOP
    INSERT INTO audit_lane_base AS b (lane, base_hash, upto_id, dropped)
      VALUES ((l ->> 'lane')::smallint, l ->> 'headHash', p_to, (l ->> 'count')::bigint)
      ON CONFLICT (lane) DO UPDATE
        SET base_hash = EXCLUDED.base_hash, upto_id = EXCLUDED.upto_id, dropped = b.dropped + EXCLUDED.dropped;
  END LOOP;
  -- The checkpoint: PS3.15 A.5.3.11 Security Alert (110113) with 110129 Security Configuration,
  -- action E, as AUDIT_EVENTS['audit-retention'] in src/audit/audit-codes.ts (a test compares them).
  INSERT INTO audit_events (kind, event_id, event_type_code, action_code, outcome, actor, detail)
    VALUES ('audit-retention', '110113', '110129', 'E', 0, p_actor,
            jsonb_build_object('segment', jsonb_build_object('fromId', p_from, 'toId', p_to),
                               'rows', deleted, 'lanes', actual, 'archive', p_archive))
    RETURNING id INTO checkpoint_id;
  RETURN checkpoint_id;
END
$$;
REVOKE ALL ON FUNCTION audit_retention_drop(bigint, bigint, jsonb, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_retention_drop(bigint, bigint, jsonb, jsonb, text) TO radscribe_app;
