import { createHash } from 'node:crypto';
import { mkdir, open, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { type InstanceIdentity, instanceIdentity, parsePart10 } from '../dicom/dataset.js';
import { ErrorCode, errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
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
 */

export interface InstanceStoreOptions {
  readonly pool: pg.Pool;
  /** Root of `<study>/<series>/<sop>.dcm`. UIDs are digits and dots (PS3.5 §9.1), safe as path parts. */
  readonly storageDir: string;
  readonly logger?: Logger;
}

export const SELECT_INSTANCE_FOR_UPDATE = `
SELECT file_sha256, file_path FROM instances WHERE sop_instance_uid = $1 FOR UPDATE`;

/** Creates the study row on first sight; counters move in TOUCH_STUDY once the instance is in. */
export const ENSURE_STUDY = `
INSERT INTO studies (study_instance_uid) VALUES ($1) ON CONFLICT (study_instance_uid) DO NOTHING`;

/** The row lock on the new primary key serialises concurrent receipts of the same SOP instance. */
export const INSERT_INSTANCE = `
INSERT INTO instances (sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid, transfer_syntax_uid,
                       modality, file_path, file_sha256, size_bytes, received_via, remote_address, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (sop_instance_uid) DO NOTHING
RETURNING sop_instance_uid`;

/**
 * A new instance re-opens the study: back to 'receiving' from any state, so a study completed
 * ('done'/'failed') is described again once it is stable (and a queued job waits for that).
 */
export const TOUCH_STUDY = `
UPDATE studies SET state = 'receiving', last_received_at = now(), instance_count = instance_count + 1,
                   updated_at = now()
WHERE study_instance_uid = $1`;

type Failed = Extract<InstanceOutcome, { status: 'failed' }>;

function failed(
  failureReason: Failed['failureReason'],
  code: ErrorCode,
  message: string,
  id?: { sopClassUid?: string; sopInstanceUid?: string },
): Failed {
  return {
    status: 'failed',
    failureReason,
    code,
    message,
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

/** PS3.4 B.2.3: resources → A700; otherwise a processing failure (0110). */
function reasonFor(code: ErrorCode): Failed['failureReason'] {
  return code === ErrorCode.DatabaseUnavailable || code === ErrorCode.OutOfResources
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

class StoreFailure extends Error {
  constructor(readonly outcome: Failed) {
    super(outcome.message);
  }
}

export class InstanceStore implements InstanceSink {
  readonly #pool: pg.Pool;
  readonly #storageDir: string;
  readonly #log: Logger;

  constructor(options: InstanceStoreOptions) {
    this.#pool = options.pool;
    this.#storageDir = path.resolve(options.storageDir);
    this.#log = options.logger ?? childLogger('instance-store');
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
      await this.#auditFailure(outcome, ctx);
    }
    return outcome;
  }

  async #accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome> {
    let buf: Buffer;
    try {
      buf = await readFile(file.path);
    } catch (err: unknown) {
      const code = errorCodeOf(err);
      return failed(reasonFor(code), code, `read received file: ${normalizeErrorString(err)}`);
    }
    // Recompute rather than trust the front end's hash: duplicate detection depends on it.
    const sha256 = createHash('sha256').update(buf).digest('hex');

    // Parse the whole file, not just the header: a truncated pixel data element must fail now
    // (0xC000 Cannot Understand, PS3.4 B.2.3), not when the pipeline reads it.
    let id: InstanceIdentity;
    try {
      id = instanceIdentity(parsePart10(buf));
    } catch (err: unknown) {
      return failed(FailureReason.CannotUnderstand, ErrorCode.DicomInvalid, normalizeErrorString(err));
    }
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

    const finalPath = this.pathFor(id);
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
    try {
      await client.query('BEGIN');
      const prior = await client.query<{ file_sha256: string; file_path: string }>(SELECT_INSTANCE_FOR_UPDATE, [
        id.sopInstanceUid,
      ]);
      const existing = prior.rows[0];
      if (existing) {
        await client.query('ROLLBACK');
        return this.#classifyExisting(existing, sha256, id);
      }
      await client.query(ENSURE_STUDY, [id.studyInstanceUid]);
      const ins = await client.query(INSERT_INSTANCE, [
        id.sopInstanceUid,
        id.studyInstanceUid,
        id.seriesInstanceUid,
        id.sopClassUid,
        id.transferSyntaxUid,
        id.modality ?? null,
        finalPath,
        sha256,
        buf.byteLength,
        ctx.via,
        ctx.remoteAddress ?? null,
        ctx.actor ?? null,
      ]);
      if ((ins.rowCount ?? 0) === 0) {
        // A concurrent receipt of the same SOP instance committed first (we waited on its row lock).
        await client.query('ROLLBACK');
        const again = await client.query<{ file_sha256: string; file_path: string }>(
          'SELECT file_sha256, file_path FROM instances WHERE sop_instance_uid = $1',
          [id.sopInstanceUid],
        );
        const row = again.rows[0];
        if (!row) throw new Error('instance row vanished during concurrent receipt');
        return this.#classifyExisting(row, sha256, id);
      }
      // We hold the new row's lock, so no one else writes this path until we commit or roll back.
      try {
        await fsyncPath(file.path, 'r+');
        await mkdir(path.dirname(finalPath), { recursive: true });
        await rename(file.path, finalPath);
        renamed = true;
        await fsyncPath(path.dirname(finalPath), 'r');
      } catch (err: unknown) {
        const code = errorCodeOf(err) === ErrorCode.OutOfResources ? ErrorCode.OutOfResources : ErrorCode.Internal;
        throw new StoreFailure(failed(reasonFor(code), code, `write instance file: ${normalizeErrorString(err)}`, ids));
      }
      await client.query(TOUCH_STUDY, [id.studyInstanceUid]);
      await recordAudit(client, {
        kind: 'instance-received',
        ...(ctx.actor ? { actor: ctx.actor } : {}),
        ...(ctx.remoteAddress ? { source: ctx.remoteAddress } : {}),
        studyInstanceUid: id.studyInstanceUid,
        sopInstanceUids: [id.sopInstanceUid],
        detail: {
          via: ctx.via,
          seriesInstanceUid: id.seriesInstanceUid,
          sopClassUid: id.sopClassUid,
          transferSyntaxUid: id.transferSyntaxUid,
          sha256,
          sizeBytes: buf.byteLength,
        },
      });
      await client.query('COMMIT');
      this.#log.info('instance stored', {
        sopInstanceUid: id.sopInstanceUid,
        studyInstanceUid: id.studyInstanceUid,
        sha256,
      });
      return { status: 'stored', identity: id, storedPath: finalPath };
    } catch (err: unknown) {
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

  #classifyExisting(
    existing: { file_sha256: string; file_path: string },
    sha256: string,
    id: InstanceIdentity,
  ): InstanceOutcome {
    if (existing.file_sha256 === sha256) {
      // Identical resend (PS3.4 B.2.3 allows success for an already-stored instance): keep one copy.
      this.#log.info('duplicate instance ignored', { sopInstanceUid: id.sopInstanceUid, sha256 });
      return { status: 'duplicate', identity: id, storedPath: existing.file_path };
    }
    return failed(
      FailureReason.DuplicateSopInstance,
      ErrorCode.DicomInvalid,
      'SOP Instance UID (0008,0018) already stored with different content',
      { sopClassUid: id.sopClassUid, sopInstanceUid: id.sopInstanceUid },
    );
  }

  /** Refusals are audited too (outcome 8, serious failure), best effort: the DB may be what failed. */
  async #auditFailure(outcome: Failed, ctx: ReceiptContext): Promise<void> {
    if (outcome.code === ErrorCode.DatabaseUnavailable) return;
    try {
      await recordAudit(this.#pool, {
        kind: 'instance-received',
        outcome: EventOutcome.SeriousFailure,
        ...(ctx.actor ? { actor: ctx.actor } : {}),
        ...(ctx.remoteAddress ? { source: ctx.remoteAddress } : {}),
        ...(ctx.expectedStudyInstanceUid ? { studyInstanceUid: ctx.expectedStudyInstanceUid } : {}),
        ...(outcome.sopInstanceUid ? { sopInstanceUids: [outcome.sopInstanceUid] } : {}),
        detail: { via: ctx.via, errorCode: outcome.code, failureReason: outcome.failureReason },
      });
    } catch (err: unknown) {
      this.#log.warn('could not audit refused instance', { error: normalizeErrorString(err) });
    }
  }
}
