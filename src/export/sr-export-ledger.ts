import type { Queryable } from '../db/pool.js';
import type { PredecessorDocument } from '../dicom/sr/sr-document.js';
import type { ErrorCode } from '../errors.js';

/** What kind of object an export row records. Matches the CHECK on sr_exports.object_kind. */
export const ExportedObjectKind = { Sr: 'sr', Pdf: 'pdf' } as const;
export type ExportedObjectKind = (typeof ExportedObjectKind)[keyof typeof ExportedObjectKind];

export interface ExportRecord {
  readonly sopInstanceUid: string;
  readonly sopClassUid: string;
  readonly seriesInstanceUid: string;
  readonly studyInstanceUid: string;
  readonly deviceUid: string;
  readonly destination: string;
  readonly objectKind: ExportedObjectKind;
  readonly jobId: number;
}

export const UPSERT_SENT = `
INSERT INTO sr_exports (sop_instance_uid, study_instance_uid, job_id, destination, state, file_path, sent_at,
                        sop_class_uid, series_instance_uid, device_uid, object_kind)
VALUES ($1, $2, $3, $4, 'sent', $5, now(), $6, $7, $8, $9)
ON CONFLICT (sop_instance_uid, destination) DO UPDATE
  SET state = 'sent', job_id = EXCLUDED.job_id, file_path = EXCLUDED.file_path, sent_at = now(),
      error_code = NULL, last_error = NULL`;

export const UPSERT_FAILED = `
INSERT INTO sr_exports (sop_instance_uid, study_instance_uid, job_id, destination, state, file_path,
                        sop_class_uid, series_instance_uid, device_uid, object_kind, error_code, last_error)
VALUES ($1, $2, $3, $4, 'failed', '', $5, $6, $7, $8, $9, $10)
ON CONFLICT (sop_instance_uid, destination) DO UPDATE
  SET state = CASE WHEN sr_exports.state = 'sent' THEN 'sent' ELSE 'failed' END,
      error_code = EXCLUDED.error_code, last_error = EXCLUDED.last_error`;

/**
 * The latest SR of the same class sent for this study to this destination other than the draft about
 * to be sent ($4): the draft it replaces (PS3.3 C.17.2.1 Predecessor Documents Sequence). That is the
 * draft of a different model (Device UID) after a re-run with a new model version, or the draft of
 * the study's previous version when instances arrived after a job had claimed it (migration 0017). A
 * re-send of the same draft (same SOP Instance UID: same model, version and inputs) finds the same
 * predecessor as its first send. Uses sr_exports_predecessor_idx.
 */
export const SELECT_PREDECESSOR = `
SELECT sop_instance_uid, sop_class_uid, series_instance_uid, study_instance_uid
  FROM sr_exports
 WHERE study_instance_uid = $1 AND destination = $2 AND sop_class_uid = $3 AND state = 'sent'
   AND object_kind = 'sr' AND sop_instance_uid <> $4
 ORDER BY sent_at DESC
 LIMIT 1`;

/**
 * Series of a study that hold our own exported objects (draft SR, PDF companion), sent or not: the
 * QIDO-RS poller must not take them for late series of the study (they would come back as new
 * instances and open a new version on every export).
 */
export const SELECT_EXPORTED_SERIES = `
SELECT DISTINCT series_instance_uid FROM sr_exports WHERE study_instance_uid = $1 AND series_instance_uid IS NOT NULL`;

/** Is this SOP Instance UID one of our own exported objects (to any destination, sent or not)? */
export const SELECT_IS_OWN_EXPORT = 'SELECT 1 FROM sr_exports WHERE sop_instance_uid = $1 LIMIT 1';

/**
 * True when `sopInstanceUid` is a draft SR or PDF companion this gateway made: ingest stores it when it
 * comes back (a PACS routing it to us) but does not take it for new input of the study (issue 11: it
 * would open a new version, whose draft would come back again, without end).
 */
export async function isOwnExport(q: Queryable, sopInstanceUid: string): Promise<boolean> {
  const { rowCount } = await q.query(SELECT_IS_OWN_EXPORT, [sopInstanceUid]);
  return (rowCount ?? 0) > 0;
}

/** The gateway's memory of what it exported where (table sr_exports). */
export class SrExportLedger {
  constructor(private readonly q: Queryable) {}

  async findPredecessor(r: {
    studyInstanceUid: string;
    destination: string;
    sopClassUid: string;
    /** The draft about to be sent: never its own predecessor. */
    sopInstanceUid: string;
  }): Promise<PredecessorDocument | undefined> {
    const { rows } = await this.q.query<{
      sop_instance_uid: string;
      sop_class_uid: string;
      series_instance_uid: string;
      study_instance_uid: string;
    }>(SELECT_PREDECESSOR, [r.studyInstanceUid, r.destination, r.sopClassUid, r.sopInstanceUid]);
    const row = rows[0];
    return row
      ? {
          sopInstanceUid: row.sop_instance_uid,
          sopClassUid: row.sop_class_uid,
          seriesInstanceUid: row.series_instance_uid,
          studyInstanceUid: row.study_instance_uid,
        }
      : undefined;
  }

  async exportedSeriesOf(studyInstanceUid: string): Promise<Set<string>> {
    const { rows } = await this.q.query<{ series_instance_uid: string }>(SELECT_EXPORTED_SERIES, [studyInstanceUid]);
    return new Set(rows.map((r) => r.series_instance_uid));
  }

  async recordSent(r: ExportRecord, location: string): Promise<void> {
    await this.q.query(UPSERT_SENT, [
      r.sopInstanceUid,
      r.studyInstanceUid,
      r.jobId,
      r.destination,
      location,
      r.sopClassUid,
      r.seriesInstanceUid,
      r.deviceUid,
      r.objectKind,
    ]);
  }

  async recordFailed(r: ExportRecord, code: ErrorCode, message: string): Promise<void> {
    await this.q.query(UPSERT_FAILED, [
      r.sopInstanceUid,
      r.studyInstanceUid,
      r.jobId,
      r.destination,
      r.sopClassUid,
      r.seriesInstanceUid,
      r.deviceUid,
      r.objectKind,
      code,
      message,
    ]);
  }
}
