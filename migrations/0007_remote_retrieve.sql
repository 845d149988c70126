-- Issue 9: bounded WADO-RS retrieve retries per remote study (PS3.18 §10.4 Retrieve).
-- A study whose retrieve failed is retried with exponential backoff (next_attempt_at, computed in
-- SQL by remote-study-tracker.ts) and, after remoteNodes[].poll.maxRetrieveAttempts failures,
-- parked as 'given-up': no further retrieve until the PACS reports a different number of instances
-- for it (NumberOfStudyRelatedInstances (0020,1208) in the QIDO-RS answer) or an operator reopens it.

ALTER TABLE remote_studies DROP CONSTRAINT remote_studies_state_check;
ALTER TABLE remote_studies ADD CONSTRAINT remote_studies_state_check
  CHECK (state IN ('seen', 'retrieved', 'failed', 'given-up'));

-- Earliest time of the next retrieve attempt of a 'failed' study; NULL = at the next poll.
ALTER TABLE remote_studies ADD COLUMN next_attempt_at timestamptz NULL;
-- NumberOfStudyRelatedInstances the PACS reported when the last attempt was made; NULL = not reported.
ALTER TABLE remote_studies ADD COLUMN remote_instance_count integer NULL CHECK (remote_instance_count >= 0);
-- SOP Instance UIDs that could not be retrieved or stored in the last attempt (UIDs only, no PHI).
ALTER TABLE remote_studies ADD COLUMN failed_instances text[] NOT NULL DEFAULT '{}';
