import type { Queryable } from '../db/pool.js';
import type { PredecessorDocument } from '../dicom/sr/sr-document.js';
import type { ErrorCode } from '../errors.js';
import type { Delivery } from './sr-destination.js';

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

/** Delivered: the staged bytes are no longer needed (the destination holds the object). */
export const UPSERT_SENT = `
INSERT INTO sr_exports (sop_instance_uid, study_instance_uid, job_id, destination, state, file_path, sent_at,
                        sop_class_uid, series_instance_uid, device_uid, object_kind, delivery)
VALUES ($1, $2, $3, $4, 'sent', $5, now(), $6, $7, $8, $9, $10)
ON CONFLICT (sop_instance_uid, destination) DO UPDATE
  SET state = 'sent', job_id = EXCLUDED.job_id, file_path = EXCLUDED.file_path, sent_at = now(),
      error_code = NULL, last_error = NULL, delivery = EXCLUDED.delivery, part10 = NULL`;

/**
 * The outbox (migration 0017): a job's draft objects, staged before the first send. An object sent
 * by an earlier job keeps its state 'sent' (the predecessor lookup reads it) until this send ends.
 */
export const UPSERT_STAGED = `
INSERT INTO sr_exports (sop_instance_uid, study_instance_uid, job_id, destination, state, file_path,
                        sop_class_uid, series_instance_uid, device_uid, object_kind, part10, part10_sha256, staged)
VALUES ($1, $2, $3, $4, 'pending', '', $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (sop_instance_uid, destination) DO UPDATE
  SET job_id = EXCLUDED.job_id, sop_class_uid = EXCLUDED.sop_class_uid,
      series_instance_uid = EXCLUDED.series_instance_uid, device_uid = EXCLUDED.device_uid,
      object_kind = EXCLUDED.object_kind, part10 = EXCLUDED.part10, part10_sha256 = EXCLUDED.part10_sha256,
      staged = EXCLUDED.staged, delivery = NULL`;

/** A job's staged objects, the SR before its PDF companion. */
export const SELECT_STAGED_FOR_JOB = `
SELECT sop_instance_uid, study_instance_uid, job_id, destination, state, file_path, sop_class_uid,
       series_instance_uid, device_uid, object_kind, part10, part10_sha256, staged
  FROM sr_exports
 WHERE job_id = $1 AND staged IS NOT NULL
 ORDER BY CASE object_kind WHEN 'sr' THEN 0 ELSE 1 END, sop_instance_uid`;

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
 * the study's previous version when instances arrived after a job had claimed it (migration 0019). A
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

/** One staged object of a job: its Part 10 bytes until delivered, then only its row. */
export interface StagedExport {
  readonly record: ExportRecord;
  /** The bytes to (re)send; undefined once delivered. */
  readonly part10: Uint8Array | undefined;
  readonly part10Sha256: string | null;
  /** Where it was delivered (file_path), when it was. */
  readonly location: string;
  /** What the draft export recorded for a resend (draft-export.ts StagedDraftDetail); JSON, no PHI. */
  readonly staged: Record<string, unknown>;
}

/**
 * Series of a study that hold our own exported objects (draft SR, PDF companion), sent or not: the
 * QIDO-RS poller must not take them for late series of the study (they would come back as new
 * instances and open a new version on every export).
 */
export const SELECT_EXPORTED_SERIES = `
SELECT DISTINCT series_instance_uid FROM sr_exports WHERE study_instance_uid = $1 AND series_instance_uid IS NOT NULL`;

/** $1–$8 of the ledger's upserts: the object and where it goes (same order in every statement). */
function recordParams(r: ExportRecord): unknown[] {
  return [
    r.sopInstanceUid,
    r.studyInstanceUid,
    r.jobId,
    r.destination,
    r.sopClassUid,
    r.seriesInstanceUid,
    r.deviceUid,
    r.objectKind,
  ];
}

/** The gateway's memory of what it exported where (table sr_exports), and its outbox. */
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

  /** Stage a draft's objects (one statement each, in the caller's transaction when it passes one). */
  async stage(
    objects: readonly { record: ExportRecord; part10: Uint8Array; sha256: string; staged: object }[],
  ): Promise<void> {
    for (const o of objects) {
      const r = o.record;
      await this.q.query(UPSERT_STAGED, [
        ...recordParams(r),
        Buffer.from(o.part10.buffer, o.part10.byteOffset, o.part10.byteLength),
        o.sha256,
        JSON.stringify(o.staged),
      ]);
    }
  }

  /** What job `jobId` staged in an earlier attempt (empty when it staged nothing yet). */
  async stagedForJob(jobId: number): Promise<StagedExport[]> {
    const { rows } = await this.q.query<{
      sop_instance_uid: string;
      study_instance_uid: string;
      job_id: string | number;
      destination: string;
      file_path: string;
      sop_class_uid: string;
      series_instance_uid: string;
      device_uid: string;
      object_kind: ExportedObjectKind;
      part10: Uint8Array | null;
      part10_sha256: string | null;
      staged: Record<string, unknown>;
    }>(SELECT_STAGED_FOR_JOB, [jobId]);
    return rows.map((row) => ({
      record: {
        sopInstanceUid: row.sop_instance_uid,
        studyInstanceUid: row.study_instance_uid,
        jobId: Number(row.job_id),
        destination: row.destination,
        sopClassUid: row.sop_class_uid,
        seriesInstanceUid: row.series_instance_uid,
        deviceUid: row.device_uid,
        objectKind: row.object_kind,
      },
      part10: row.part10 ? new Uint8Array(row.part10) : undefined,
      part10Sha256: row.part10_sha256,
      location: row.file_path,
      staged: row.staged,
    }));
  }

  async exportedSeriesOf(studyInstanceUid: string): Promise<Set<string>> {
    const { rows } = await this.q.query<{ series_instance_uid: string }>(SELECT_EXPORTED_SERIES, [studyInstanceUid]);
    return new Set(rows.map((r) => r.series_instance_uid));
  }

  async recordSent(r: ExportRecord, location: string, delivery: Delivery = 'stored'): Promise<void> {
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
      delivery,
    ]);
  }

  async recordFailed(r: ExportRecord, code: ErrorCode, message: string): Promise<void> {
    await this.q.query(UPSERT_FAILED, [...recordParams(r), code, message]);
  }
}
