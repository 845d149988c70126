import type { Queryable } from '../db/pool.js';
import type { ReceivedVia } from './types.js';

/**
 * Study lifecycle and the instance index the pipeline reads (PS3.3 C.7.2.1 General Study,
 * C.7.3.1 General Series, C.12.1 SOP Common). Matches the CHECK on `studies.state`.
 */
export const StudyState = {
  /** Instances may still arrive; the stability window decides completeness. */
  Receiving: 'receiving',
  /** Stable; a describe-study job waits for a worker. */
  Queued: 'queued',
  /** A worker runs the describe-study job. */
  Processing: 'processing',
  /** The job succeeded. A new instance sends the study back to 'receiving' for a re-run. */
  Done: 'done',
  /** The job failed permanently. A new instance sends the study back to 'receiving'. */
  Failed: 'failed',
} as const;
export type StudyState = (typeof StudyState)[keyof typeof StudyState];

export interface Study {
  readonly studyInstanceUid: string;
  readonly state: StudyState;
  readonly firstReceivedAt: Date;
  readonly lastReceivedAt: Date;
  readonly instanceCount: number;
  readonly updatedAt: Date;
}

/** What the pipeline needs to load one instance. */
export interface StoredInstance {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly modality: string | null;
  readonly filePath: string;
  readonly transferSyntaxUid: string;
  readonly fileSha256: string;
  readonly sizeBytes: number;
  readonly receivedVia: ReceivedVia;
  readonly receivedAt: Date;
  /** Who sent it: HTTP user, calling AE title, or the remote node it was retrieved from. */
  readonly actor: string | null;
}

export const SELECT_STUDY = 'SELECT * FROM studies WHERE study_instance_uid = $1';

/** Series then instance order is stable for the pipeline; the index instances_study_idx covers it. */
export const SELECT_STUDY_INSTANCES = `
SELECT sop_instance_uid, series_instance_uid, sop_class_uid, modality, file_path, transfer_syntax_uid,
       file_sha256, size_bytes, received_via, received_at, actor
FROM instances WHERE study_instance_uid = $1
ORDER BY series_instance_uid, received_at, sop_instance_uid`;

export const LIST_STUDIES = `
SELECT * FROM studies WHERE ($1::text IS NULL OR state = $1)
ORDER BY last_received_at DESC LIMIT $2`;

export const SET_STUDY_STATE = `
UPDATE studies SET state = $2, updated_at = now() WHERE study_instance_uid = $1 RETURNING *`;

interface StudyRow {
  study_instance_uid: string;
  state: StudyState;
  first_received_at: Date;
  last_received_at: Date;
  instance_count: number;
  updated_at: Date;
}

function toStudy(r: StudyRow): Study {
  return {
    studyInstanceUid: r.study_instance_uid,
    state: r.state,
    firstReceivedAt: r.first_received_at,
    lastReceivedAt: r.last_received_at,
    instanceCount: r.instance_count,
    updatedAt: r.updated_at,
  };
}

export class StudyRepository {
  readonly #q: Queryable;

  constructor(q: Queryable) {
    this.#q = q;
  }

  async getStudy(studyInstanceUid: string): Promise<Study | null> {
    const { rows } = await this.#q.query<StudyRow>(SELECT_STUDY, [studyInstanceUid]);
    return rows[0] ? toStudy(rows[0]) : null;
  }

  async getState(studyInstanceUid: string): Promise<StudyState | null> {
    return (await this.getStudy(studyInstanceUid))?.state ?? null;
  }

  /**
   * Force a study's state (operator tooling). Normal transitions happen in JobQueue and
   * study-stability.ts together with the job row. Null when the study is unknown.
   */
  async setState(studyInstanceUid: string, state: StudyState, q: Queryable = this.#q): Promise<Study | null> {
    const { rows } = await q.query<StudyRow>(SET_STUDY_STATE, [studyInstanceUid, state]);
    return rows[0] ? toStudy(rows[0]) : null;
  }

  async listInstances(studyInstanceUid: string): Promise<StoredInstance[]> {
    const { rows } = await this.#q.query<{
      sop_instance_uid: string;
      series_instance_uid: string;
      sop_class_uid: string;
      modality: string | null;
      file_path: string;
      transfer_syntax_uid: string;
      file_sha256: string;
      size_bytes: string | number;
      received_via: ReceivedVia;
      received_at: Date;
      actor: string | null;
    }>(SELECT_STUDY_INSTANCES, [studyInstanceUid]);
    return rows.map((r) => ({
      sopInstanceUid: r.sop_instance_uid,
      seriesInstanceUid: r.series_instance_uid,
      sopClassUid: r.sop_class_uid,
      modality: r.modality,
      filePath: r.file_path,
      transferSyntaxUid: r.transfer_syntax_uid,
      fileSha256: r.file_sha256,
      sizeBytes: Number(r.size_bytes),
      receivedVia: r.received_via,
      receivedAt: r.received_at,
      actor: r.actor,
    }));
  }

  /** Most recently received first; default limit 100. */
  async listStudies(filter: { state?: StudyState; limit?: number } = {}): Promise<Study[]> {
    const { rows } = await this.#q.query<StudyRow>(LIST_STUDIES, [filter.state ?? null, filter.limit ?? 100]);
    return rows.map(toStudy);
  }
}
