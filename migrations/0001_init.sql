-- 0001_init: studies, instances, job queue, QIDO poller memory, SR exports.
-- States are text + CHECK matching the `as const` objects in src/ingest/study-repository.ts,
-- src/jobs/types.ts, src/ingest/remote-study-tracker.ts and src/ingest/types.ts (STYLE §2.7).
-- Forward-only: never edit this file once merged; add 0003_… instead.

-- One row per Study Instance UID (PS3.3 C.7.2.1) we hold instances of.
-- 'receiving' = instances may still arrive; the stability window (src/jobs/study-stability.ts)
-- decides when the study is complete and promotes it to 'queued'.
CREATE TABLE studies (
  study_instance_uid text PRIMARY KEY CHECK (length(study_instance_uid) BETWEEN 1 AND 64),
  state text NOT NULL DEFAULT 'receiving'
    CHECK (state IN ('receiving', 'queued', 'processing', 'done', 'failed')),
  first_received_at timestamptz NOT NULL DEFAULT now(),
  last_received_at timestamptz NOT NULL DEFAULT now(),
  instance_count integer NOT NULL DEFAULT 0 CHECK (instance_count >= 0),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- promoteStableStudies scans receiving studies by age.
CREATE INDEX studies_receiving_idx ON studies (last_received_at) WHERE state = 'receiving';

-- One row per stored SOP Instance (PS3.3 C.12.1). The file is the durable copy; the row is
-- committed only after the file was fsynced and renamed into place.
CREATE TABLE instances (
  sop_instance_uid text PRIMARY KEY CHECK (length(sop_instance_uid) BETWEEN 1 AND 64),
  study_instance_uid text NOT NULL REFERENCES studies (study_instance_uid),
  series_instance_uid text NOT NULL,
  sop_class_uid text NOT NULL,
  transfer_syntax_uid text NOT NULL,
  modality text NULL,
  file_path text NOT NULL,
  file_sha256 text NOT NULL CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
  size_bytes bigint NOT NULL CHECK (size_bytes >= 0),
  received_via text NOT NULL CHECK (received_via IN ('stow-rs', 'wado-rs', 'c-store', 'import')),
  remote_address text NULL,
  actor text NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_study_idx ON instances (study_instance_uid, series_instance_uid);

-- Durable job queue (reference/js-stack.md §7: FOR UPDATE SKIP LOCKED, run_at, attempts, lease).
-- priority: lower runs first.
CREATE TABLE jobs (
  id bigserial PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('describe-study')),
  state text NOT NULL DEFAULT 'queued'
    CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
  study_instance_uid text NOT NULL,
  payload jsonb NOT NULL DEFAULT '{}'::jsonb,
  priority integer NOT NULL DEFAULT 0,
  run_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  max_attempts integer NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
  locked_by text NULL,
  locked_until timestamptz NULL,
  error_code text NULL,
  last_error text NULL,
  result jsonb NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  -- A running job always holds a lease; anything else never does.
  CHECK ((state = 'running') = (locked_until IS NOT NULL))
);
-- At most one live job per (kind, study): re-promotion cannot stack duplicate work.
CREATE UNIQUE INDEX jobs_one_active_per_study_idx ON jobs (kind, study_instance_uid)
  WHERE state IN ('queued', 'running');
-- CLAIM_NEXT_JOB reads this index in order (asserted by the plan test).
CREATE INDEX jobs_claim_idx ON jobs (priority, run_at) WHERE state = 'queued';
-- RECLAIM_EXPIRED_LEASES finds running jobs whose worker died.
CREATE INDEX jobs_lease_idx ON jobs (locked_until) WHERE state = 'running';
CREATE INDEX jobs_study_idx ON jobs (study_instance_uid);

-- The QIDO-RS poller's memory of remote studies (PS3.18 §10.6 search, §10.4 retrieve), so a
-- study already retrieved from a node is not fetched again on the next poll.
CREATE TABLE remote_studies (
  remote_node text NOT NULL,
  study_instance_uid text NOT NULL,
  state text NOT NULL DEFAULT 'seen' CHECK (state IN ('seen', 'retrieved', 'failed')),
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz NOT NULL DEFAULT now(),
  attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
  error_code text NULL,
  last_error text NULL,
  PRIMARY KEY (remote_node, study_instance_uid)
);

-- Draft SRs written back to PACS (PS3.3 A.35.3 Comprehensive SR), one row per SR SOP instance.
CREATE TABLE sr_exports (
  sop_instance_uid text PRIMARY KEY,
  study_instance_uid text NOT NULL,
  job_id bigint NULL REFERENCES jobs (id),
  destination text NOT NULL,
  state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed')),
  file_path text NOT NULL,
  sent_at timestamptz NULL,
  error_code text NULL,
  last_error text NULL
);
CREATE INDEX sr_exports_study_idx ON sr_exports (study_instance_uid);
