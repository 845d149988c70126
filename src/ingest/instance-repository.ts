import type { Queryable } from '../db/pool.js';
import type { InstanceHeader, InstanceRecord, QuarantineReason, ReceivedVia, StoredInstance } from './types.js';

/**
 * The one owner of the `instances` table (issue 8: one lifecycle owner per table). An instance row
 * is written once, at receipt, in the instance store's transaction, and never changed afterwards:
 * a resend with the same bytes is a duplicate, with other bytes a refusal (PS3.4 B.2.3), so there
 * is no DELETE here. The UPDATEs: the header columns of rows stored before migration 0004
 * (src/ingest/header-backfill.ts), once; the decode marker and quarantine of migration 0008
 * (issue 9); retention marking a study's rows deleted after removing their files (migration 0009,
 * src/ingest/retention.ts); and a later receipt of a deleted instance, which revives its row. Every
 * statement on `instances` is a named constant below; reads see live rows (deleted_at IS NULL) only.
 */

/** Locks an existing row, so a concurrent receipt of the same SOP instance waits for our commit. */
export const SELECT_INSTANCE_FOR_UPDATE = `
SELECT file_sha256, file_path FROM instances WHERE sop_instance_uid = $1 AND deleted_at IS NULL FOR UPDATE`;

export const SELECT_INSTANCE_DIGEST = `
SELECT file_sha256, file_path FROM instances WHERE sop_instance_uid = $1 AND deleted_at IS NULL`;

/**
 * The row lock on the new primary key serialises concurrent receipts of the same SOP instance. A row
 * that retention marked deleted is taken over by the new receipt (its file is gone, so the instance
 * is new again); a live row is left alone and nothing is returned.
 */
export const INSERT_INSTANCE = `
INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, transfer_syntax_uid,
                       modality, file_path, file_sha256, size_bytes, received_via, remote_address, actor,
                       instance_number, series_number, number_of_frames, pixel_rows, pixel_columns,
                       photometric_interpretation, body_part_examined, series_description,
                       specific_character_set, has_pixel_data, called_ae_title)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)
ON CONFLICT (sop_instance_uid) DO UPDATE SET
  study_instance_uid = EXCLUDED.study_instance_uid, series_instance_uid = EXCLUDED.series_instance_uid,
  sop_class_uid = EXCLUDED.sop_class_uid, transfer_syntax_uid = EXCLUDED.transfer_syntax_uid,
  modality = EXCLUDED.modality, file_path = EXCLUDED.file_path, file_sha256 = EXCLUDED.file_sha256,
  size_bytes = EXCLUDED.size_bytes, received_via = EXCLUDED.received_via, remote_address = EXCLUDED.remote_address,
  actor = EXCLUDED.actor, instance_number = EXCLUDED.instance_number, series_number = EXCLUDED.series_number,
  number_of_frames = EXCLUDED.number_of_frames, pixel_rows = EXCLUDED.pixel_rows,
  pixel_columns = EXCLUDED.pixel_columns, photometric_interpretation = EXCLUDED.photometric_interpretation,
  body_part_examined = EXCLUDED.body_part_examined, series_description = EXCLUDED.series_description,
  specific_character_set = EXCLUDED.specific_character_set, has_pixel_data = EXCLUDED.has_pixel_data,
  called_ae_title = EXCLUDED.called_ae_title, header_read = true, received_at = now(), deleted_at = NULL
WHERE instances.deleted_at IS NOT NULL
RETURNING sop_instance_uid`;

/**
 * Series, then Instance Number (PS3.3 C.7.6.1), then arrival: a stable order for the pipeline; the
 * index instances_study_idx narrows to the study. NULL instance numbers sort last within a series.
 * Quarantined instances (migration 0008) are not listed: the pipeline never opens them again.
 */
export const SELECT_STUDY_INSTANCES = `
SELECT sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, transfer_syntax_uid, modality,
       file_path, file_sha256, size_bytes, received_via, received_at, actor,
       instance_number, series_number, number_of_frames, pixel_rows, pixel_columns,
       photometric_interpretation, body_part_examined, series_description, specific_character_set, has_pixel_data,
       decode_started_at, called_ae_title
FROM instances WHERE study_instance_uid = $1 AND quarantined_at IS NULL AND deleted_at IS NULL
ORDER BY series_instance_uid, instance_number NULLS LAST, received_at, sop_instance_uid`;

/** How many of a study's instances are quarantined. $1 study. */
export const COUNT_QUARANTINED = `
SELECT count(*)::int AS n FROM instances WHERE study_instance_uid = $1 AND quarantined_at IS NOT NULL`;

/**
 * The decode marker (issue 9): set and committed before the image-prep worker opens the file, so a
 * crash of the whole process is attributed to the instance at the job's next claim. $1 SOP UID.
 */
export const MARK_DECODE_STARTED = `
UPDATE instances SET decode_started_at = now() WHERE sop_instance_uid = $1 AND quarantined_at IS NULL`;

/** The worker answered (with pixels or a typed error): the instance did not take the process down. */
export const CLEAR_DECODE_STARTED = `
UPDATE instances SET decode_started_at = NULL WHERE sop_instance_uid = $1`;

/** Set an instance aside for good; no row when it was already quarantined. $1 SOP UID, $2 reason. */
export const QUARANTINE_INSTANCE = `
UPDATE instances SET quarantined_at = now(), quarantine_reason = $2, decode_started_at = NULL
WHERE sop_instance_uid = $1 AND quarantined_at IS NULL
RETURNING study_instance_uid`;

/** Rows stored before migration 0004, whose header columns were never filled (partial index). */
export const SELECT_UNREAD_HEADERS = `
SELECT sop_instance_uid, file_path FROM instances WHERE NOT header_read AND deleted_at IS NULL
ORDER BY sop_instance_uid LIMIT $1`;

/**
 * Fill the header columns of one such row. `header_read` becomes true also when the file could not
 * be read ($2 NULL: has_pixel_data stays false), so an unreadable file is tried once, not every start.
 */
export const UPDATE_UNREAD_HEADER = `
UPDATE instances SET header_read = true,
  instance_number = $2, series_number = $3, number_of_frames = coalesce($4, 1), pixel_rows = $5, pixel_columns = $6,
  photometric_interpretation = $7, body_part_examined = $8, series_description = $9,
  specific_character_set = $10, has_pixel_data = coalesce($11, false)
WHERE sop_instance_uid = $1 AND NOT header_read`;

/**
 * Live instances of a study with where their files are and who sent them, row-locked for retention's
 * transaction (a receipt of the same SOP Instance waits until the files are gone and the rows marked).
 */
export const SELECT_LIVE_INSTANCES_FOR_UPDATE = `
SELECT sop_instance_uid, series_instance_uid, file_path, size_bytes, received_via, actor
FROM instances WHERE study_instance_uid = $1 AND deleted_at IS NULL
ORDER BY sop_instance_uid
FOR UPDATE`;

/** Where each live instance of a study came from, for matching retention rules. */
export const SELECT_STUDY_SOURCES = `
SELECT DISTINCT received_via, actor FROM instances WHERE study_instance_uid = $1 AND deleted_at IS NULL`;

/** The same without the lock (the dry run, which changes nothing). */
export const SELECT_LIVE_INSTANCES = `
SELECT sop_instance_uid, series_instance_uid, file_path, size_bytes, received_via, actor
FROM instances WHERE study_instance_uid = $1 AND deleted_at IS NULL
ORDER BY sop_instance_uid`;

/** Retention removed the files: mark the rows (kept for their digest and provenance). $1 study, $2 SOP UIDs. */
export const MARK_INSTANCES_DELETED = `
UPDATE instances SET deleted_at = now()
WHERE study_instance_uid = $1 AND sop_instance_uid = ANY($2::text[]) AND deleted_at IS NULL`;

/**
 * Every SOP Instance UID of a study ever stored here, by series, deleted rows included: the QIDO-RS
 * poller asks which instances the PACS holds that we never received (late series, issue 11), and an
 * instance retention removed was received (it must not be fetched again and open a new version).
 */
export const SELECT_HELD_SOP_INSTANCES = `
SELECT series_instance_uid, sop_instance_uid FROM instances WHERE study_instance_uid = $1`;

/**
 * Instances of a study (optionally one series, one instance) for a WADO-RS retrieve (PS3.18 §10.4),
 * deleted and quarantined rows included so the retrieve can tell "gone" (410) from "never held"
 * (404). $1 study, $2 series or NULL, $3 SOP Instance UID or NULL. Order as the pipeline reads them.
 */
export const SELECT_RETRIEVABLE_INSTANCES = `
SELECT sop_instance_uid, series_instance_uid, sop_class_uid, transfer_syntax_uid, file_path, file_sha256, size_bytes,
       called_ae_title, deleted_at IS NOT NULL AS deleted, quarantined_at IS NOT NULL AS quarantined
FROM instances
WHERE study_instance_uid = $1 AND ($2::text IS NULL OR series_instance_uid = $2) AND ($3::text IS NULL OR sop_instance_uid = $3)
ORDER BY series_instance_uid, instance_number NULLS LAST, received_at, sop_instance_uid`;

/** One instance as a WADO-RS retrieve sees it. */
export interface RetrievableInstance {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly sopClassUid: string;
  readonly transferSyntaxUid: string;
  readonly filePath: string;
  readonly fileSha256: string;
  readonly sizeBytes: number;
  readonly calledAeTitle: string | null;
  /** Retention removed its file (migration 0009). */
  readonly deleted: boolean;
  /** Set aside for good (migration 0008): never served. */
  readonly quarantined: boolean;
}

export async function listRetrievableInstances(
  q: Queryable,
  where: { readonly studyInstanceUid: string; readonly seriesInstanceUid?: string; readonly sopInstanceUid?: string },
): Promise<RetrievableInstance[]> {
  const { rows } = await q.query<{
    sop_instance_uid: string;
    series_instance_uid: string;
    sop_class_uid: string;
    transfer_syntax_uid: string;
    file_path: string;
    file_sha256: string;
    size_bytes: string | number;
    called_ae_title: string | null;
    deleted: boolean;
    quarantined: boolean;
  }>(SELECT_RETRIEVABLE_INSTANCES, [
    where.studyInstanceUid,
    where.seriesInstanceUid ?? null,
    where.sopInstanceUid ?? null,
  ]);
  return rows.map((r) => ({
    sopInstanceUid: r.sop_instance_uid,
    seriesInstanceUid: r.series_instance_uid,
    sopClassUid: r.sop_class_uid,
    transferSyntaxUid: r.transfer_syntax_uid,
    filePath: r.file_path,
    fileSha256: r.file_sha256,
    sizeBytes: Number(r.size_bytes),
    calledAeTitle: r.called_ae_title,
    deleted: r.deleted,
    quarantined: r.quarantined,
  }));
}

/** What a receipt writes: the header plus where and how the bytes arrived. */
export interface NewInstance extends InstanceRecord {
  readonly remoteAddress: string | null;
}

/** The stored digest and place of an instance, for duplicate classification. */
export interface InstanceDigest {
  readonly fileSha256: string;
  readonly filePath: string;
}

interface InstanceRow {
  sop_instance_uid: string;
  study_instance_uid: string;
  series_instance_uid: string;
  sop_class_uid: string;
  transfer_syntax_uid: string;
  modality: string | null;
  file_path: string;
  file_sha256: string;
  /** bigint: pg returns it as a string. */
  size_bytes: string | number;
  received_via: ReceivedVia;
  received_at: Date;
  actor: string | null;
  instance_number: number | null;
  series_number: number | null;
  number_of_frames: number;
  pixel_rows: number | null;
  pixel_columns: number | null;
  photometric_interpretation: string | null;
  body_part_examined: string | null;
  series_description: string | null;
  specific_character_set: string | null;
  has_pixel_data: boolean;
  decode_started_at?: Date | null;
  called_ae_title?: string | null;
}

function toStoredInstance(r: InstanceRow): StoredInstance {
  return {
    sopInstanceUid: r.sop_instance_uid,
    studyInstanceUid: r.study_instance_uid,
    seriesInstanceUid: r.series_instance_uid,
    sopClassUid: r.sop_class_uid,
    transferSyntaxUid: r.transfer_syntax_uid,
    modality: r.modality,
    filePath: r.file_path,
    fileSha256: r.file_sha256,
    sizeBytes: Number(r.size_bytes),
    receivedVia: r.received_via,
    receivedAt: r.received_at,
    actor: r.actor,
    instanceNumber: r.instance_number,
    seriesNumber: r.series_number,
    numberOfFrames: r.number_of_frames,
    rows: r.pixel_rows,
    columns: r.pixel_columns,
    photometricInterpretation: r.photometric_interpretation,
    bodyPartExamined: r.body_part_examined,
    seriesDescription: r.series_description,
    specificCharacterSet: r.specific_character_set,
    hasPixelData: r.has_pixel_data,
    decodeStartedAt: r.decode_started_at ?? null,
    calledAeTitle: r.called_ae_title ?? null,
  };
}

function toDigest(r: { file_sha256: string; file_path: string } | undefined): InstanceDigest | null {
  return r ? { fileSha256: r.file_sha256, filePath: r.file_path } : null;
}

/** Insert the row for a new instance; false when a concurrent receipt committed the same SOP first. */
export async function insertInstance(q: Queryable, i: NewInstance): Promise<boolean> {
  const res = await q.query(INSERT_INSTANCE, [
    i.sopInstanceUid,
    i.studyInstanceUid,
    i.seriesInstanceUid,
    i.sopClassUid,
    i.transferSyntaxUid,
    i.modality,
    i.filePath,
    i.fileSha256,
    i.sizeBytes,
    i.receivedVia,
    i.remoteAddress,
    i.actor,
    i.instanceNumber,
    i.seriesNumber,
    i.numberOfFrames,
    i.rows,
    i.columns,
    i.photometricInterpretation,
    i.bodyPartExamined,
    i.seriesDescription,
    i.specificCharacterSet,
    i.hasPixelData,
    i.calledAeTitle ?? null,
  ]);
  return (res.rowCount ?? 0) > 0;
}

/** The stored digest of an instance, row-locked until the caller's transaction ends. */
export async function lockInstanceDigest(q: Queryable, sopInstanceUid: string): Promise<InstanceDigest | null> {
  const { rows } = await q.query<{ file_sha256: string; file_path: string }>(SELECT_INSTANCE_FOR_UPDATE, [
    sopInstanceUid,
  ]);
  return toDigest(rows[0]);
}

export async function instanceDigest(q: Queryable, sopInstanceUid: string): Promise<InstanceDigest | null> {
  const { rows } = await q.query<{ file_sha256: string; file_path: string }>(SELECT_INSTANCE_DIGEST, [sopInstanceUid]);
  return toDigest(rows[0]);
}

/** Rows whose header columns predate migration 0004: at most `limit` of them. */
export async function listUnreadHeaders(
  q: Queryable,
  limit: number,
): Promise<{ sopInstanceUid: string; filePath: string }[]> {
  const { rows } = await q.query<{ sop_instance_uid: string; file_path: string }>(SELECT_UNREAD_HEADERS, [limit]);
  return rows.map((r) => ({ sopInstanceUid: r.sop_instance_uid, filePath: r.file_path }));
}

/** Record the header read from a pre-0004 row's file, or (header null) that its file is unreadable. */
export async function recordBackfilledHeader(
  q: Queryable,
  sopInstanceUid: string,
  h: InstanceHeader | null,
): Promise<void> {
  await q.query(UPDATE_UNREAD_HEADER, [
    sopInstanceUid,
    h?.instanceNumber ?? null,
    h?.seriesNumber ?? null,
    h?.numberOfFrames ?? null,
    h?.rows ?? null,
    h?.columns ?? null,
    h?.photometricInterpretation ?? null,
    h?.bodyPartExamined ?? null,
    h?.seriesDescription ?? null,
    h?.specificCharacterSet ?? null,
    h ? h.hasPixelData : null,
  ]);
}

/** Record that a decode of the instance is starting (committed before the worker opens the file). */
export async function markDecodeStarted(q: Queryable, sopInstanceUid: string): Promise<void> {
  await q.query(MARK_DECODE_STARTED, [sopInstanceUid]);
}

export async function clearDecodeStarted(q: Queryable, sopInstanceUid: string): Promise<void> {
  await q.query(CLEAR_DECODE_STARTED, [sopInstanceUid]);
}

/** Quarantine an instance; false when it already was (the caller then audits nothing). */
export async function quarantineInstance(
  q: Queryable,
  sopInstanceUid: string,
  reason: QuarantineReason,
): Promise<boolean> {
  const res = await q.query(QUARANTINE_INSTANCE, [sopInstanceUid, reason]);
  return (res.rowCount ?? 0) > 0;
}

export async function countQuarantined(q: Queryable, studyInstanceUid: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(COUNT_QUARANTINED, [studyInstanceUid]);
  return rows[0]?.n ?? 0;
}

/** One live instance as retention sees it. */
export interface LiveInstanceFile {
  readonly sopInstanceUid: string;
  readonly seriesInstanceUid: string;
  readonly filePath: string;
  readonly sizeBytes: number;
  readonly receivedVia: ReceivedVia;
  readonly actor: string | null;
}

/** How and from whom a study's instances arrived (one entry per distinct pair). */
export interface InstanceSource {
  readonly via: ReceivedVia;
  readonly actor: string | null;
}

/** Live instances of a study, row-locked until the caller's transaction ends (retention). */
export function lockLiveInstances(q: Queryable, studyInstanceUid: string): Promise<LiveInstanceFile[]> {
  return liveInstances(q, SELECT_LIVE_INSTANCES_FOR_UPDATE, studyInstanceUid);
}

/** Live instances of a study, no lock (the retention dry run). */
export function listLiveInstances(q: Queryable, studyInstanceUid: string): Promise<LiveInstanceFile[]> {
  return liveInstances(q, SELECT_LIVE_INSTANCES, studyInstanceUid);
}

async function liveInstances(q: Queryable, sql: string, studyInstanceUid: string): Promise<LiveInstanceFile[]> {
  const { rows } = await q.query<{
    sop_instance_uid: string;
    series_instance_uid: string;
    file_path: string;
    size_bytes: string | number;
    received_via: ReceivedVia;
    actor: string | null;
  }>(sql, [studyInstanceUid]);
  return rows.map((r) => ({
    sopInstanceUid: r.sop_instance_uid,
    seriesInstanceUid: r.series_instance_uid,
    filePath: r.file_path,
    sizeBytes: Number(r.size_bytes),
    receivedVia: r.received_via,
    actor: r.actor,
  }));
}

export async function studySources(q: Queryable, studyInstanceUid: string): Promise<InstanceSource[]> {
  const { rows } = await q.query<{ received_via: ReceivedVia; actor: string | null }>(SELECT_STUDY_SOURCES, [
    studyInstanceUid,
  ]);
  return rows.map((r) => ({ via: r.received_via, actor: r.actor }));
}

/** Mark the given live rows of a study deleted; returns how many were marked. */
export async function markInstancesDeleted(
  q: Queryable,
  studyInstanceUid: string,
  sopInstanceUids: readonly string[],
): Promise<number> {
  const res = await q.query(MARK_INSTANCES_DELETED, [studyInstanceUid, [...sopInstanceUids]]);
  return res.rowCount ?? 0;
}

/** Reads of `instances` for the pipeline and the operator commands. */
export class InstanceRepository {
  readonly #q: Queryable;

  constructor(q: Queryable) {
    this.#q = q;
  }

  /** Every instance of a study in pipeline order (series, Instance Number, arrival, SOP UID). */
  async listForStudy(studyInstanceUid: string): Promise<StoredInstance[]> {
    const { rows } = await this.#q.query<InstanceRow>(SELECT_STUDY_INSTANCES, [studyInstanceUid]);
    return rows.map(toStoredInstance);
  }

  /** SOP Instance UIDs of a study ever stored (deleted ones too), by Series Instance UID. */
  async heldInstancesBySeries(studyInstanceUid: string): Promise<Map<string, Set<string>>> {
    const { rows } = await this.#q.query<{ series_instance_uid: string; sop_instance_uid: string }>(
      SELECT_HELD_SOP_INSTANCES,
      [studyInstanceUid],
    );
    const out = new Map<string, Set<string>>();
    for (const r of rows) {
      const set = out.get(r.series_instance_uid) ?? new Set<string>();
      set.add(r.sop_instance_uid);
      out.set(r.series_instance_uid, set);
    }
    return out;
  }
}
