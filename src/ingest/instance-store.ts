import { access, mkdir, open, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import type { InstanceIdentity } from '../dicom/dataset.js';
import { DEFAULT_MAX_HEADER_BYTES } from '../dicom/header-reader.js';
import { DEFAULT_DICOM_LIMITS, DicomLimitError, type DicomLimits } from '../dicom/limits.js';
import { DicomError, ErrorCode, errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import { type DiskCheck, type DiskGuard, StorageFullError } from './disk-guard.js';
import { type InstanceDigest, insertInstance, lockInstanceDigest } from './instance-repository.js';
import { OutageRefusals } from './outage-refusals.js';
import { type ReceivedHeader, readReceivedHeader } from './received-header.js';
import { ensureStudy, recordReceipt } from './study-lifecycle.js';
import {
  FailureReason,
  type InstanceOutcome,
  type InstanceSink,
  type ReceiptContext,
  type ReceivedFile,
} from './types.js';

/**
 * Durable instance storage behind the InstanceSink seam. An instance is acknowledged ('stored') only
 * after its file is fsynced and renamed into place *and* its row is committed
 * (reference/dicom-sr-and-audit.md §7), so a crash never acknowledges data we do not have.
 *
 * The file rule when the database fails (issue 9). The file is renamed into place inside the
 * transaction, under the new row's lock.
 * - The server reported an error (it carries an SQLSTATE): the transaction is known to roll back,
 *   and we still hold the row lock until our ROLLBACK, so our file is removed first.
 * - The connection failed (lost, timed out, COMMIT sent but no answer): whether the COMMIT happened
 *   is unknown, and the lock may already be gone. The file is kept and the instance is refused as
 *   out of resources (0xA700, nothing acknowledged). If the COMMIT did happen, row and file agree and
 *   the client's retry is answered as an identical duplicate; if it did not, the file is an orphan
 *   with no row, which the retry renames over. Deleting it could remove a committed instance's only
 *   copy, or a concurrent receipt's file once our lock is gone.
 * - A resend whose row exists but whose file is missing (an older build deleted it, or the disk lost
 *   it) puts the resent bytes back when their sha256 matches the row.
 */

export interface InstanceStoreOptions {
  readonly pool: pg.Pool;
  /** Root of `<study>/<series>/<sop>.dcm`. UIDs are digits and dots (PS3.5 §9.1), safe as path parts. */
  readonly storageDir: string;
  readonly logger?: Logger;
  /** Largest header read at ingest (bytes before Pixel Data); default DEFAULT_MAX_HEADER_BYTES (64 MiB). */
  readonly maxHeaderBytes?: number;
  /** Bounds on hostile content (config `dicomLimits`); default DEFAULT_DICOM_LIMITS. */
  readonly limits?: DicomLimits;
  /**
   * Free-space watermark and reserve of the storage file system (issue 9). Without one nothing is
   * checked up front (a full disk still fails the write with storage-full / 0xA700).
   */
  readonly guard?: DiskGuard;
}

type Failed = Extract<InstanceOutcome, { status: 'failed' }>;

function failed(
  failureReason: Failed['failureReason'],
  code: ErrorCode,
  message: string,
  id?: { sopClassUid?: string; sopInstanceUid?: string },
  violation?: Failed['violation'],
): Failed {
  return {
    status: 'failed',
    failureReason,
    code,
    message,
    ...(violation ? { violation } : {}),
    ...(id?.sopClassUid ? { sopClassUid: id.sopClassUid } : {}),
    ...(id?.sopInstanceUid ? { sopInstanceUid: id.sopInstanceUid } : {}),
  };
}

/** A server-reported SQL error keeps its classification; anything else from pg means the DB is gone. */
function classifyDbError(err: unknown): ErrorCode {
  const code = errorCodeOf(err);
  if (code !== ErrorCode.Internal) return code;
  return typeof (err as { severity?: unknown } | null)?.severity === 'string'
    ? ErrorCode.Internal
    : ErrorCode.DatabaseUnavailable;
}

/** Reported by the server (SQLSTATE + severity): the connection is fine and the transaction rolls back. */
function serverReported(err: unknown): boolean {
  return typeof (err as { severity?: unknown } | null)?.severity === 'string';
}

/** PS3.4 B.2.3: resources (storage included) → A700; otherwise a processing failure (0110). */
function reasonFor(code: ErrorCode): Failed['failureReason'] {
  return code === ErrorCode.DatabaseUnavailable || code === ErrorCode.OutOfResources || code === ErrorCode.StorageFull
    ? FailureReason.OutOfResources
    : FailureReason.ProcessingFailure;
}

/** fsync a file or directory so a rename survives power loss (POSIX needs the directory synced too). */
async function fsyncPath(p: string, flags: 'r' | 'r+'): Promise<void> {
  const fh = await open(p, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/**
 * mkdir + rename into place. Retention removes a study's directories once they are empty; a receipt
 * whose fresh directory vanished between the two steps makes it again, once.
 */
async function renameInto(from: string, to: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    await mkdir(path.dirname(to), { recursive: true });
    try {
      await rename(from, to);
      return;
    } catch (err: unknown) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw err;
    }
  }
}

class StoreFailure extends Error {
  constructor(readonly outcome: Failed) {
    super(outcome.message);
  }
}

/** The instance file could not be made durable in place: out of resources when the disk is full. */
function writeFailure(err: unknown, ids: { sopClassUid: string; sopInstanceUid: string }): StoreFailure {
  const c = errorCodeOf(err);
  const code = c === ErrorCode.OutOfResources || c === ErrorCode.StorageFull ? c : ErrorCode.Internal;
  return new StoreFailure(failed(reasonFor(code), code, `write instance file: ${normalizeErrorString(err)}`, ids));
}

/**
 * A promise started now and awaited later: marked handled at once, so that a path that returns early
 * without awaiting it (a refusal, a duplicate) leaves no unhandled rejection; awaiting it still throws.
 */
function settled<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export class InstanceStore implements InstanceSink {
  readonly #pool: pg.Pool;
  readonly #storageDir: string;
  readonly #log: Logger;
  readonly #maxHeaderBytes: number;
  readonly #limits: DicomLimits;
  readonly #guard: DiskGuard | undefined;
  /** Refusals the database could not record when they happened (outage-refusals.ts). */
  readonly outageRefusals = new OutageRefusals();

  constructor(options: InstanceStoreOptions) {
    this.#pool = options.pool;
    this.#storageDir = path.resolve(options.storageDir);
    this.#log = options.logger ?? childLogger('instance-store');
    this.#maxHeaderBytes = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    this.#limits = options.limits ?? DEFAULT_DICOM_LIMITS;
    this.#guard = options.guard;
  }

  /**
   * Before a front end writes anything (a STOW-RS request of `expectedBytes` by its Content-Length, a
   * WADO-RS retrieve): refuse when the storage would fall below its watermark or reserve. Throws
   * StorageFullError (HTTP 507 Insufficient Storage, RFC 4918 §11.5); the refusal is audited as
   * 'instance-refused' with outcome 8. Resolves at once without a guard.
   */
  async admit(expectedBytes: number, ctx: ReceiptContext): Promise<void> {
    if (!this.#guard) return;
    const check = await this.#guard.check(expectedBytes);
    if (check.ok) return;
    this.#log.warn('request refused: insufficient storage', { via: ctx.via, ...check });
    await this.#auditRefusal(ctx, {
      errorCode: ErrorCode.StorageFull,
      scope: 'request',
      ...diskDetail(check),
    });
    throw new StorageFullError(check);
  }

  /** Where an instance lives: `<storageDir>/<study>/<series>/<sop>.dcm`. */
  pathFor(id: Pick<InstanceIdentity, 'studyInstanceUid' | 'seriesInstanceUid' | 'sopInstanceUid'>): string {
    return path.join(this.#storageDir, id.studyInstanceUid, id.seriesInstanceUid, `${id.sopInstanceUid}.dcm`);
  }

  async accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome> {
    let outcome: InstanceOutcome;
    try {
      outcome = await this.#accept(file, ctx);
    } catch (err: unknown) {
      const code = err instanceof StoreFailure ? err.outcome.code : errorCodeOf(err);
      outcome =
        err instanceof StoreFailure
          ? err.outcome
          : failed(reasonFor(code), code, `store instance: ${normalizeErrorString(err)}`);
    }
    if (outcome.status !== 'stored') await rm(file.path, { force: true }).catch(() => undefined);
    if (outcome.status === 'failed') {
      this.#log.warn('instance refused', {
        errorCode: outcome.code,
        failureReason: outcome.failureReason,
        sopInstanceUid: outcome.sopInstanceUid,
        via: ctx.via,
      });
      await this.#auditFailure(outcome, ctx, file);
    } else if (this.outageRefusals.pending > 0) {
      // The database answers again (our client is released): record what it could not record.
      await this.outageRefusals.flush(this.#pool, this.#log);
    }
    return outcome;
  }

  async #accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome> {
    // The header is read from a stream up to Pixel Data, and the pixel data element checked against
    // the file size, so a truncated instance fails now (0xC000 Cannot Understand, PS3.4 B.2.3) and a
    // 2 GB instance costs the memory of its header (issue 8). The file is read once, here: the hash
    // is the front end's, computed while the bytes streamed in (ReceivedFile.sha256).
    //
    // The spool file's fsync starts now, on the thread pool, while the header is read and the row
    // written (issue 14: it was a third of the time to answer); the rename waits for it, so nothing
    // is renamed into place, committed or acknowledged before its bytes are durable. A refusal
    // removes the file whatever the fsync is doing (its error is then of no interest).
    const synced = settled(fsyncPath(file.path, 'r+'));
    let received: ReceivedHeader;
    try {
      received = await readReceivedHeader(file.path, { maxHeaderBytes: this.#maxHeaderBytes, limits: this.#limits });
    } catch (err: unknown) {
      if (err instanceof DicomLimitError) {
        // PS3.4 B.2.3 / PS3.18 §10.5.3 give a STOW-RS or C-STORE receiver two refusals here. An input
        // over one of our own bounds (inflated size, nesting, element count, decoded size) may be
        // conformant — the standard sets no such bound — so it is "A700 Refused: Out of Resources",
        // which tells the sender that this receiver will not spend the resources, not that the data
        // is wrong. An input that contradicts itself (a length or frame dimensions beyond the bytes
        // present) is "C000 Error: Cannot understand", like any other undecodable data set.
        return failed(
          err.resource ? FailureReason.OutOfResources : FailureReason.CannotUnderstand,
          ErrorCode.DicomHostile,
          normalizeErrorString(err),
          undefined,
          err.violation,
        );
      }
      if (err instanceof DicomError) {
        return failed(FailureReason.CannotUnderstand, ErrorCode.DicomInvalid, normalizeErrorString(err));
      }
      const code = errorCodeOf(err);
      return failed(reasonFor(code), code, `read received file: ${normalizeErrorString(err)}`);
    }
    if (received.sizeBytes !== file.sizeBytes) {
      // The digest describes other bytes than the file holds: a front-end bug, never the sender's.
      return failed(
        FailureReason.ProcessingFailure,
        ErrorCode.Internal,
        `received file holds ${received.sizeBytes} bytes, the front end counted ${file.sizeBytes}`,
      );
    }
    const id = received.identity;
    const sha256 = file.sha256;
    const ids = { sopClassUid: id.sopClassUid, sopInstanceUid: id.sopInstanceUid };
    // PS3.18 §10.5.1: instances POSTed to /studies/{uid} must belong to that study (0xA900).
    if (ctx.expectedStudyInstanceUid !== undefined && ctx.expectedStudyInstanceUid !== id.studyInstanceUid) {
      return failed(
        FailureReason.DataSetDoesNotMatchSopClass,
        ErrorCode.StudyMismatch,
        'Study Instance UID (0020,000D) differs from the study in the request URI',
        ids,
      );
    }

    // PS3.4 B.2.3 / PS3.7 §9.1.1: the data set must be the one the C-STORE-RQ announced (0xA900).
    if (ctx.expectedSopClassUid !== undefined && ctx.expectedSopClassUid !== id.sopClassUid) {
      return failed(
        FailureReason.DataSetDoesNotMatchSopClass,
        ErrorCode.DicomInvalid,
        'SOP Class UID (0008,0016) differs from the Affected SOP Class UID of the request',
        ids,
      );
    }
    if (ctx.expectedSopInstanceUid !== undefined && ctx.expectedSopInstanceUid !== id.sopInstanceUid) {
      return failed(
        FailureReason.DataSetDoesNotMatchSopClass,
        ErrorCode.DicomInvalid,
        'SOP Instance UID (0008,0018) differs from the Affected SOP Instance UID of the request',
        ids,
      );
    }

    const finalPath = this.pathFor(id);
    // Free space (a statfs) is measured while the row is written; only a new instance waits for it.
    const room = settled(this.#guard?.check(0) ?? Promise.resolve(undefined));
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (err: unknown) {
      return failed(
        FailureReason.OutOfResources,
        ErrorCode.DatabaseUnavailable,
        `database: ${normalizeErrorString(err)}`,
        ids,
      );
    }
    let renamed = false;
    let clientBroken: Error | undefined;
    // Its own BEGIN / COMMIT rather than db/pool.ts inTransaction: the file must be removed while the
    // row lock is still held (before ROLLBACK), an early duplicate answer rolls back instead of
    // committing, and a COMMIT whose outcome is unknown keeps the file (the rule above).
    try {
      // Round trips (issue 14): BEGIN, study row, instance row, study receipt, audit event, COMMIT.
      // The instance row is written first and the existing row looked at only when there is one:
      // ON CONFLICT DO UPDATE locks the conflicting row even where its WHERE is false (PostgreSQL
      // INSERT, "ON CONFLICT Clause"), so an identical resend is classified under the same row lock
      // the former SELECT … FOR UPDATE took.
      await client.query('BEGIN');
      await ensureStudy(client, id.studyInstanceUid);
      const inserted = await insertInstance(client, {
        ...received.header,
        sopInstanceUid: id.sopInstanceUid,
        studyInstanceUid: id.studyInstanceUid,
        filePath: finalPath,
        fileSha256: sha256,
        sizeBytes: received.sizeBytes,
        receivedVia: ctx.via,
        remoteAddress: ctx.remoteAddress ?? null,
        actor: ctx.actor ?? null,
        calledAeTitle: ctx.calledAeTitle ?? null,
      });
      if (!inserted) {
        // A live row exists (an earlier receipt, or a concurrent one that committed while we waited
        // on its lock): we now hold its lock.
        const existing = await lockInstanceDigest(client, id.sopInstanceUid);
        if (!existing) throw new Error('instance row vanished during concurrent receipt');
        // Under the row lock, so no one else writes the path while a missing file is put back.
        if (existing.fileSha256 === sha256) {
          await synced.catch(() => undefined);
          await this.#restoreMissingFile(file.path, existing.filePath, id);
        }
        await client.query('ROLLBACK');
        return this.#classifyExisting(existing, sha256, id);
      }
      // Only a new instance needs room (an identical resend is answered from the stored copy). Its
      // bytes are already on this file system (the spool file) and the rename needs no more, so the
      // check asks only that the limit still holds with them: if not, 0xA700, and accept() removes
      // the spool file.
      const check = await room;
      if (check && !check.ok) {
        await client.query('ROLLBACK');
        return failed(FailureReason.OutOfResources, ErrorCode.StorageFull, new StorageFullError(check).message, ids);
      }
      // We hold the new row's lock, so no one else writes this path until we commit or roll back.
      let dirSynced: Promise<void>;
      try {
        await synced;
        await renameInto(file.path, finalPath);
        renamed = true;
        // The directory's fsync (POSIX: the rename is durable only then) runs while the study and
        // the audit event are written; COMMIT waits for it.
        dirSynced = settled(fsyncPath(path.dirname(finalPath), 'r'));
      } catch (err: unknown) {
        throw writeFailure(err, ids);
      }
      // After the file is in place: it locks the study row, so receipts of one study serialise only
      // for their commit, not for their file writes.
      // A study a describe job had already claimed opens its next version here (migration 0019),
      // unless the instance is our own exported draft coming back: that is no new input.
      const { version: studyVersion, ownExport } = await recordReceipt(client, id.studyInstanceUid, id.sopInstanceUid);
      await recordAudit(client, {
        kind: 'instance-received',
        ...(ctx.actor ? { actor: ctx.actor } : {}),
        ...(ctx.remoteAddress ? { source: ctx.remoteAddress } : {}),
        studyInstanceUid: id.studyInstanceUid,
        sopInstanceUids: [id.sopInstanceUid],
        detail: {
          via: ctx.via,
          ...(ctx.calledAeTitle ? { calledAeTitle: ctx.calledAeTitle } : {}),
          seriesInstanceUid: id.seriesInstanceUid,
          sopClassUid: id.sopClassUid,
          transferSyntaxUid: id.transferSyntaxUid,
          sha256,
          sizeBytes: received.sizeBytes,
        },
      });
      try {
        await dirSynced;
      } catch (err: unknown) {
        throw writeFailure(err, ids);
      }
      await client.query('COMMIT');
      this.#log.info('instance stored', {
        sopInstanceUid: id.sopInstanceUid,
        studyInstanceUid: id.studyInstanceUid,
        studyVersion,
        ...(ownExport ? { ownExport } : {}),
        sha256,
      });
      return { status: 'stored', identity: id, storedPath: finalPath };
    } catch (err: unknown) {
      if (!(err instanceof StoreFailure) && !serverReported(err)) {
        // The connection failed: COMMIT outcome unknown, lock maybe gone. Keep the file (rule above)
        // and destroy the connection; the server rolls back whatever it had not committed.
        clientBroken = err instanceof Error ? err : new Error(normalizeErrorString(err));
        if (renamed)
          this.#log.warn('database failed after the instance file was written: file kept, outcome unknown', {
            sopInstanceUid: id.sopInstanceUid,
            sha256,
          });
        throw new StoreFailure(
          failed(
            FailureReason.OutOfResources,
            ErrorCode.DatabaseUnavailable,
            `database: ${normalizeErrorString(err)}`,
            ids,
          ),
        );
      }
      // Remove our file while we still hold the row lock, so we never delete a concurrent writer's copy.
      if (renamed) await rm(finalPath, { force: true }).catch(() => undefined);
      await client.query('ROLLBACK').catch((rbErr: unknown) => {
        clientBroken = rbErr instanceof Error ? rbErr : new Error(normalizeErrorString(rbErr));
      });
      if (err instanceof StoreFailure) throw err;
      const code = classifyDbError(err);
      throw new StoreFailure(failed(reasonFor(code), code, `database: ${normalizeErrorString(err)}`, ids));
    } finally {
      client.release(clientBroken);
    }
  }

  /** The row exists with this content but its file does not: put the resent bytes in its place. */
  async #restoreMissingFile(tempPath: string, storedPath: string, id: InstanceIdentity): Promise<void> {
    const present = await access(storedPath).then(
      () => true,
      () => false,
    );
    if (present) return;
    try {
      await fsyncPath(tempPath, 'r+');
      await mkdir(path.dirname(storedPath), { recursive: true });
      await rename(tempPath, storedPath);
      await fsyncPath(path.dirname(storedPath), 'r');
    } catch (err: unknown) {
      const code = errorCodeOf(err) === ErrorCode.OutOfResources ? ErrorCode.OutOfResources : ErrorCode.Internal;
      throw new StoreFailure(
        failed(reasonFor(code), code, `restore instance file: ${normalizeErrorString(err)}`, {
          sopClassUid: id.sopClassUid,
          sopInstanceUid: id.sopInstanceUid,
        }),
      );
    }
    this.#log.warn('stored instance file was missing: restored from an identical resend', {
      sopInstanceUid: id.sopInstanceUid,
    });
  }

  #classifyExisting(existing: InstanceDigest, sha256: string, id: InstanceIdentity): InstanceOutcome {
    if (existing.fileSha256 === sha256) {
      // Identical resend (PS3.4 B.2.3 allows success for an already-stored instance): keep one copy.
      this.#log.info('duplicate instance ignored', { sopInstanceUid: id.sopInstanceUid, sha256 });
      return { status: 'duplicate', identity: id, storedPath: existing.filePath };
    }
    return failed(
      FailureReason.DuplicateSopInstance,
      ErrorCode.DicomInvalid,
      'SOP Instance UID (0008,0018) already stored with different content',
      { sopClassUid: id.sopClassUid, sopInstanceUid: id.sopInstanceUid },
    );
  }

  /**
   * Refusals are audited as `instance-refused` (outcome 8, serious failure) with the received
   * bytes' hash, best effort: the DB may be what failed.
   */
  async #auditFailure(outcome: Failed, ctx: ReceiptContext, file: ReceivedFile): Promise<void> {
    if (outcome.code === ErrorCode.DatabaseUnavailable) {
      this.outageRefusals.record(outcome.sopInstanceUid, ctx.via);
      return;
    }
    if (outcome.code === ErrorCode.StorageFull) {
      await this.#auditRefusal(
        ctx,
        // The message holds the sizes measured (free, minimum free), never a path.
        { errorCode: outcome.code, failureReason: outcome.failureReason, scope: 'instance', reason: outcome.message },
        outcome.sopInstanceUid,
      );
      return;
    }
    await this.#auditRefusal(
      ctx,
      {
        errorCode: outcome.code,
        failureReason: outcome.failureReason,
        ...(outcome.sopClassUid ? { sopClassUid: outcome.sopClassUid } : {}),
        sha256: file.sha256,
        sizeBytes: file.sizeBytes,
        ...(outcome.violation ? { violation: outcome.violation } : {}),
      },
      outcome.sopInstanceUid,
    );
  }

  /** An 'instance-refused' event (PS3.15 A.5.3.5 with outcome 8), best effort like #auditFailure. */
  async #auditRefusal(ctx: ReceiptContext, detail: Record<string, unknown>, sopInstanceUid?: string): Promise<void> {
    try {
      await recordAudit(this.#pool, {
        kind: AuditEventKind.InstanceRefused,
        outcome: EventOutcome.SeriousFailure,
        ...(ctx.actor ? { actor: ctx.actor } : {}),
        ...(ctx.remoteAddress ? { source: ctx.remoteAddress } : {}),
        ...(ctx.expectedStudyInstanceUid ? { studyInstanceUid: ctx.expectedStudyInstanceUid } : {}),
        ...(sopInstanceUid ? { sopInstanceUids: [sopInstanceUid] } : {}),
        detail: { via: ctx.via, ...(ctx.calledAeTitle ? { calledAeTitle: ctx.calledAeTitle } : {}), ...detail },
      });
    } catch (err: unknown) {
      this.#log.warn('could not audit refused instance', { error: normalizeErrorString(err) });
    }
  }
}

/** Sizes only: the audit detail names no path. */
function diskDetail(c: DiskCheck): Record<string, number> {
  return {
    freeBytes: c.freeBytes,
    totalBytes: c.totalBytes,
    minFreeBytes: c.minFreeBytes,
    incomingBytes: c.incomingBytes,
  };
}
