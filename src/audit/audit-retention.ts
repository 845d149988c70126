import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Queryable } from '../db/pool.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import {
  ARCHIVE_FORMAT,
  type ArchiveLane,
  type ArchiveManifest,
  archiveLine,
  archiveNames,
  manifestText,
  signManifest,
  verifyArchive,
} from './audit-archive.js';
import { chainRowOf, GENESIS_HASH, type RawChainRow, SELECT_AUDIT_CHAIN_RAW } from './audit-canonical.js';

/**
 * Retention of the audit trail (issue 12 "Retention"). The trail is cut into id-range segments of
 * `segmentRows` ids: (0, S], (S, 2S], … A run drops the oldest segments whose every event is older
 * than the period, one at a time, oldest first, never the segment holding the newest event:
 *   1. export the segment's rows to an archive (audit-archive.ts) and sign its manifest with the
 *      anchor key;
 *   2. read the archive back and verify it from the files alone (signature, SHA-256, every hash,
 *      every link, the counts), and that each lane continues from the last checkpoint;
 *   3. call audit_retention_drop() (migration 0021), which compares the rows with the archive's
 *      lanes under every lane lock, deletes them, and writes the checkpoint event — all in one
 *      transaction, so a segment is gone only with its checkpoint in the chain.
 * A failed step leaves the segment where it was; the next run starts again from step 1.
 */

export const DEFAULT_AUDIT_RETENTION_SEGMENT_ROWS = 100_000;
export const DEFAULT_AUDIT_RETENTION_INTERVAL_SECONDS = 86_400;
const DAY_MS = 86_400_000;
const EXPORT_PAGE = 5000;

/** One checkpoint event's detail, as audit_retention_drop() writes it. */
export interface RetentionCheckpoint {
  /** The checkpoint event's id. */
  readonly eventId: number;
  readonly fromId: number;
  readonly toId: number;
  readonly rows: number;
  readonly lanes: readonly ArchiveLane[];
  readonly archive: { readonly manifest: string; readonly sha256: string; readonly manifestSha256: string };
}

/** The archive fields a checkpoint records (its `archive` object). */
export interface CheckpointArchive {
  readonly manifest: string;
  readonly sha256: string;
  readonly manifestSha256: string;
}

/** Every checkpoint, oldest first; detail read as text (no database function involved). */
export const SELECT_RETENTION_CHECKPOINTS = `
SELECT a.id::text AS id, a.detail::text AS detail FROM audit_events a WHERE a.kind = 'audit-retention' ORDER BY a.id`;

/**
 * Parses one checkpoint's detail. Undefined when it is not one. Such an event claims nothing and is
 * ignored (ignoring a checkpoint can only make verification stricter); one a superuser edited no
 * longer hashes, which audit verify reports first.
 */
export function checkpointOf(eventId: number, detailText: string): RetentionCheckpoint | undefined {
  try {
    const d = JSON.parse(detailText) as Record<string, unknown>;
    const seg = d.segment as Record<string, unknown>;
    const arch = d.archive as Record<string, unknown>;
    const lanes = (d.lanes as Record<string, unknown>[]).map((l) => ({
      lane: l.lane as number,
      count: l.count as number,
      firstId: l.firstId as number,
      lastId: l.lastId as number,
      prevHash: l.prevHash as string,
      headHash: l.headHash as string,
    }));
    const ints = [seg.fromId, seg.toId, d.rows, ...lanes.flatMap((l) => [l.lane, l.count, l.firstId, l.lastId])];
    if (!ints.every((n) => Number.isSafeInteger(n))) return undefined;
    if (!lanes.every((l) => typeof l.prevHash === 'string' && typeof l.headHash === 'string')) return undefined;
    if (
      typeof arch?.manifest !== 'string' ||
      typeof arch.sha256 !== 'string' ||
      typeof arch.manifestSha256 !== 'string'
    )
      return undefined;
    return {
      eventId,
      fromId: seg.fromId as number,
      toId: seg.toId as number,
      rows: d.rows as number,
      lanes,
      archive: { manifest: arch.manifest, sha256: arch.sha256, manifestSha256: arch.manifestSha256 },
    };
  } catch {
    return undefined;
  }
}

export async function readRetentionCheckpoints(
  q: Queryable,
): Promise<{ checkpoints: RetentionCheckpoint[]; unreadable: number[] }> {
  const { rows } = await q.query<{ id: string; detail: string }>(SELECT_RETENTION_CHECKPOINTS);
  const checkpoints: RetentionCheckpoint[] = [];
  const unreadable: number[] = [];
  for (const r of rows) {
    const c = checkpointOf(Number(r.id), r.detail);
    if (c) checkpoints.push(c);
    else unreadable.push(Number(r.id));
  }
  return { checkpoints, unreadable };
}

/** Where each lane goes on from after the checkpoints: the last dropped row's hash and id, rows dropped. */
export interface LaneBase {
  readonly headHash: string;
  readonly lastId: number;
  readonly dropped: number;
}

export function laneBases(checkpoints: readonly RetentionCheckpoint[]): Map<number, LaneBase> {
  const out = new Map<number, LaneBase>();
  for (const c of checkpoints)
    for (const l of c.lanes)
      out.set(l.lane, { headHash: l.headHash, lastId: l.lastId, dropped: (out.get(l.lane)?.dropped ?? 0) + l.count });
  return out;
}

/** Why a run stopped at the segment it stopped at. Closed set. */
export const RetentionStop = {
  /** Nothing is left to drop: the next segment holds the newest event (it is never dropped). */
  HeadSegment: 'head-segment',
  /** The next segment has an event younger than the period. */
  TooYoung: 'too-young',
  /** The run dropped maxSegments segments; the next run goes on. */
  MaxSegments: 'max-segments',
  /** The trail has no events above the last checkpoint. */
  Empty: 'empty',
  /**
   * An ATNA destination (audit_export_cursor, migration 0012) has not yet been sent the whole next
   * segment: nothing the hospital's repository has not received is dropped.
   */
  NotExported: 'not-exported',
} as const;
export type RetentionStop = (typeof RetentionStop)[keyof typeof RetentionStop];

export interface DroppedSegment {
  readonly fromId: number;
  readonly toId: number;
  readonly rows: number;
  readonly lanes: number;
  /** The manifest file (absent in a dry run). */
  readonly manifestFile?: string;
  /** The checkpoint event (absent in a dry run). */
  readonly checkpointEventId?: number;
  /** Milliseconds spent exporting, verifying the archive, and dropping. */
  readonly ms?: { readonly export: number; readonly verify: number; readonly drop: number };
}

export interface AuditRetentionReport {
  readonly dryRun: boolean;
  readonly cutoff: string;
  readonly segments: readonly DroppedSegment[];
  readonly stoppedBecause: RetentionStop;
}

export interface AuditRetentionOptions {
  readonly pool: Queryable;
  /** Events older than this many days may be dropped. */
  readonly periodDays: number;
  readonly archiveDirectory: string;
  readonly segmentRows?: number;
  /** The anchor key (audit.anchor.privateKeyFile); its public half verifies the archive. */
  readonly privateKey: KeyObject;
  readonly dryRun?: boolean;
  /** The checkpoint event's actor (the CLI passes the operator). */
  readonly actor?: string;
  readonly maxSegments?: number;
  readonly logger?: Logger;
  /** The clock the period is measured from (tests). */
  readonly now?: () => number;
}

const SELECT_SEGMENT_RAW = SELECT_AUDIT_CHAIN_RAW.replace('WHERE a.id > $1', 'WHERE a.id > $1 AND a.id <= $3');
if (SELECT_SEGMENT_RAW === SELECT_AUDIT_CHAIN_RAW)
  throw new Error('SELECT_AUDIT_CHAIN_RAW changed: update audit-retention.ts');

/** The segment (from, to] of the first event above `frontier`, and whether it may go. */
export async function nextSegment(
  q: Queryable,
  frontier: number,
  segmentRows: number,
  cutoff: Date,
): Promise<{ fromId: number; toId: number } | RetentionStop> {
  const { rows } = await q.query<{ first: string | null; newest: string | null }>(
    `SELECT (SELECT min(a.id) FROM audit_events a WHERE a.id > $1) AS first, (SELECT max(a.id) FROM audit_events a) AS newest`,
    [frontier],
  );
  const first = rows[0]?.first == null ? undefined : Number(rows[0].first);
  const newest = Number(rows[0]?.newest ?? 0);
  if (first === undefined) return RetentionStop.Empty;
  const toId = Math.ceil(first / segmentRows) * segmentRows;
  if (newest <= toId) return RetentionStop.HeadSegment;
  const { rows: behind } = await q.query('SELECT 1 FROM audit_export_cursor c WHERE c.last_id < $1 LIMIT 1', [toId]);
  if (behind.length > 0) return RetentionStop.NotExported;
  const { rows: age } = await q.query<{ young: boolean }>(
    `SELECT coalesce(max(a.occurred_at) >= $3::timestamptz, false) AS young FROM audit_events a WHERE a.id > $1 AND a.id <= $2`,
    [frontier, toId, cutoff.toISOString()],
  );
  if (age[0]?.young) return RetentionStop.TooYoung;
  return { fromId: frontier, toId };
}

function writeFileDurably(file: string, write: (fd: number) => void): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    write(fd);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}

function fsyncDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Step 1: the segment's rows to the archive files; returns the manifest written. */
export async function exportSegment(
  q: Queryable,
  directory: string,
  fromId: number,
  toId: number,
  privateKey: KeyObject,
  createdAt: string,
): Promise<{ manifest: ArchiveManifest; manifestFile: string; manifestSha256: string }> {
  mkdirSync(directory, { recursive: true });
  const names = archiveNames(fromId, toId);
  const digest = createHash('sha256');
  const lanes = new Map<
    number,
    { count: number; firstId: number; lastId: number; prevHash: string; headHash: string }
  >();
  let rows = 0;
  const rowsFile = path.join(directory, names.rows);
  const tmp = `${rowsFile}.tmp`;
  const fd = openSync(tmp, 'w', 0o644);
  try {
    for (let after = fromId; ; ) {
      const { rows: page } = await q.query<RawChainRow>(SELECT_SEGMENT_RAW, [after, EXPORT_PAGE, toId]);
      const buf: string[] = [];
      for (const raw of page) {
        const r = chainRowOf(raw);
        const id = Number(r.id);
        buf.push(archiveLine(r));
        const l = lanes.get(r.chainLane);
        if (l) {
          l.count++;
          l.lastId = id;
          l.headHash = r.rowHash;
        } else lanes.set(r.chainLane, { count: 1, firstId: id, lastId: id, prevHash: r.prevHash, headHash: r.rowHash });
        rows++;
        after = id;
      }
      const chunk = Buffer.from(buf.join(''), 'utf8');
      digest.update(chunk);
      writeSync(fd, chunk);
      if (page.length < EXPORT_PAGE) break;
    }
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, rowsFile);
  const manifest: ArchiveManifest = {
    format: ARCHIVE_FORMAT,
    createdAt,
    fromId,
    toId,
    file: names.rows,
    sha256: digest.digest('hex'),
    rows,
    lanes: [...lanes].sort((a, b) => a[0] - b[0]).map(([lane, l]) => ({ lane, ...l })),
  };
  const text = manifestText(manifest);
  const manifestFile = path.join(directory, names.manifest);
  writeFileDurably(manifestFile, (f) => writeSync(f, text));
  writeFileDurably(path.join(directory, names.signature), (f) => writeSync(f, signManifest(manifest, privateKey)));
  fsyncDir(directory);
  return { manifest, manifestFile, manifestSha256: createHash('sha256').update(text, 'utf8').digest('hex') };
}

/** One retention pass: drops every segment that may go, oldest first (see the module comment). */
export async function runAuditRetention(options: AuditRetentionOptions): Promise<AuditRetentionReport> {
  const log = options.logger ?? childLogger('audit-retention');
  const dryRun = options.dryRun ?? false;
  const segmentRows = options.segmentRows ?? DEFAULT_AUDIT_RETENTION_SEGMENT_ROWS;
  const maxSegments = options.maxSegments ?? Number.POSITIVE_INFINITY;
  const cutoff = new Date((options.now ?? Date.now)() - options.periodDays * DAY_MS);
  const publicKey = createPublicKey(options.privateKey);
  const segments: DroppedSegment[] = [];
  // An audit-retention event that is not a checkpoint claims nothing: ignored (as by audit verify).
  const { checkpoints } = await readRetentionCheckpoints(options.pool);
  const bases = laneBases(checkpoints);
  let frontier = checkpoints.at(-1)?.toId ?? 0;
  let stoppedBecause: RetentionStop;
  for (;;) {
    if (segments.length >= maxSegments) {
      stoppedBecause = RetentionStop.MaxSegments;
      break;
    }
    const next = await nextSegment(options.pool, frontier, segmentRows, cutoff);
    if (typeof next === 'string') {
      stoppedBecause = next;
      break;
    }
    const { fromId, toId } = next;
    if (dryRun) {
      const { rows } = await options.pool.query<{ n: string; lanes: string }>(
        `SELECT count(*) AS n, count(DISTINCT a.chain_lane) AS lanes FROM audit_events a WHERE a.id > $1 AND a.id <= $2`,
        [fromId, toId],
      );
      segments.push({ fromId, toId, rows: Number(rows[0]?.n ?? 0), lanes: Number(rows[0]?.lanes ?? 0) });
      frontier = toId;
      continue;
    }
    const t0 = performance.now();
    const exported = await exportSegment(
      options.pool,
      options.archiveDirectory,
      fromId,
      toId,
      options.privateKey,
      new Date().toISOString(),
    );
    const t1 = performance.now();
    const check = await verifyArchive(exported.manifestFile, publicKey);
    if (!check.ok)
      throw new RadScribeError(
        ErrorCode.Internal,
        `audit retention: archive of segment (${fromId}, ${toId}] does not verify, nothing dropped: ${check.problem?.message}`,
      );
    // The segment must continue each lane from the last checkpoint (or the lane's start): otherwise
    // the trail is already broken there, and dropping would hide it.
    for (const l of exported.manifest.lanes) {
      const want = bases.get(l.lane)?.headHash ?? GENESIS_HASH;
      if (l.prevHash !== want)
        throw new RadScribeError(
          ErrorCode.Internal,
          `audit retention: event ${l.firstId} (lane ${l.lane}) does not link to the last checkpoint, nothing dropped; run radscribe audit verify`,
        );
    }
    const t2 = performance.now();
    const archive: CheckpointArchive = {
      manifest: path.basename(exported.manifestFile),
      sha256: exported.manifest.sha256,
      manifestSha256: exported.manifestSha256,
    };
    const { rows } = await options.pool.query<{ id: string }>(
      'SELECT audit_retention_drop($1, $2, $3::jsonb, $4::jsonb, $5) AS id',
      [fromId, toId, JSON.stringify(exported.manifest.lanes), JSON.stringify(archive), options.actor ?? 'radscribe'],
    );
    const t3 = performance.now();
    for (const l of exported.manifest.lanes)
      bases.set(l.lane, {
        headHash: l.headHash,
        lastId: l.lastId,
        dropped: (bases.get(l.lane)?.dropped ?? 0) + l.count,
      });
    const seg: DroppedSegment = {
      fromId,
      toId,
      rows: exported.manifest.rows,
      lanes: exported.manifest.lanes.length,
      manifestFile: exported.manifestFile,
      checkpointEventId: Number(rows[0]?.id),
      ms: { export: t1 - t0, verify: t2 - t1, drop: t3 - t2 },
    };
    log.info('audit segment archived and dropped', {
      fromId,
      toId,
      rows: seg.rows,
      checkpointEventId: seg.checkpointEventId,
      manifest: seg.manifestFile,
      ms: seg.ms,
    });
    segments.push(seg);
    frontier = toId;
  }
  return { dryRun, cutoff: cutoff.toISOString(), segments, stoppedBecause };
}

export interface AuditRetentionSweeperOptions extends Omit<AuditRetentionOptions, 'dryRun'> {
  readonly intervalMs: number;
}

/**
 * The gateway's periodic audit retention: a self-rescheduling loop (passes never overlap), first
 * pass one interval after start; a failed pass is logged and the next one runs on time.
 */
export class AuditRetentionSweeper {
  readonly #o: AuditRetentionSweeperOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<unknown> | undefined;
  #running = false;
  droppedSegments = 0;

  constructor(options: AuditRetentionSweeperOptions) {
    this.#o = options;
    this.#log = options.logger ?? childLogger('audit-retention');
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight?.catch(() => undefined);
  }

  async runOnce(): Promise<AuditRetentionReport> {
    const report = await runAuditRetention({ ...this.#o, logger: this.#log });
    this.droppedSegments += report.segments.length;
    return report;
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const p = this.runOnce().catch((err: unknown) => {
        this.#log.error('audit retention pass failed', { code: errorCodeOf(err), error: normalizeErrorString(err) });
      });
      this.#inFlight = p;
      void p.then(() => {
        this.#inFlight = undefined;
        this.#schedule();
      });
    }, this.#o.intervalMs);
    this.#timer.unref?.();
  }
}
