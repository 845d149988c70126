-- 0025_qido_poll_marks: the QIDO-RS poller's high-water mark per remote node (issue 11,
-- src/pacs/qido-poll-state.ts). A poll searches only [window_end − overlap, now] on StudyDate /
-- StudyTime (PS3.18 §8.3.4, range matching PS3.4 C.2.2.2.5) once a full lookback has run;
-- last_full_scan_at says when the whole lookback was last searched, so that studies whose
-- StudyDate/StudyTime (acquisition time, not arrival: QIDO-RS has no arrival attribute) lies
-- before the incremental window are still found by the periodic re-scan.
-- window_end is written only after a poll's searches all succeeded, so a failed poll searches its
-- window again. Forward-only: never edit this file once merged.
CREATE TABLE qido_poll_marks (
  remote_node text PRIMARY KEY,
  window_end timestamptz NOT NULL,
  last_full_scan_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);

-- The poller's watch list: studies of a node first seen recently (late halves, late series).
CREATE INDEX remote_studies_node_first_seen_idx ON remote_studies (remote_node, first_seen_at);
