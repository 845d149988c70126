import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { instanceIdentity, parsePart10 } from '../../src/dicom/dataset.js';
import { DicomError, ErrorCode, errorCodeOf, normalizeErrorString } from '../../src/errors.js';
import type { InstanceOutcome, InstanceSink, ReceiptContext, ReceivedFile } from '../../src/ingest/types.js';
import { FailureReason } from '../../src/ingest/types.js';

/**
 * A real (file-backed, not DB-backed) InstanceSink for tests of the protocol front ends: parses the
 * spooled file with parsePart10/instanceIdentity, checks the STOW study UID, dedups by SOP Instance
 * UID + sha256, and moves the file into `storeDir`. The production sink is the PostgreSQL InstanceStore.
 */
export interface RecordedInstance {
  readonly file: ReceivedFile;
  readonly ctx: ReceiptContext;
  readonly outcome: InstanceOutcome;
}

export class RecordingSink implements InstanceSink {
  readonly received: RecordedInstance[] = [];
  /** SOP Instance UID → sha256 and stored path. */
  readonly stored = new Map<string, { sha256: string; storedPath: string }>();
  constructor(readonly storeDir: string) {}

  async accept(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome> {
    const outcome = await this.classify(file, ctx);
    this.received.push({ file, ctx, outcome });
    return outcome;
  }

  private async classify(file: ReceivedFile, ctx: ReceiptContext): Promise<InstanceOutcome> {
    let identity: ReturnType<typeof instanceIdentity>;
    try {
      const buf = await readFile(file.path);
      identity = instanceIdentity(parsePart10(buf));
    } catch (err: unknown) {
      await rm(file.path, { force: true });
      return {
        status: 'failed',
        failureReason: FailureReason.CannotUnderstand,
        code: errorCodeOf(err),
        message: normalizeErrorString(err),
      };
    }
    const ids = { sopClassUid: identity.sopClassUid, sopInstanceUid: identity.sopInstanceUid };
    if (ctx.expectedStudyInstanceUid !== undefined && ctx.expectedStudyInstanceUid !== identity.studyInstanceUid) {
      await rm(file.path, { force: true });
      const err = new DicomError(ErrorCode.StudyMismatch, 'Study Instance UID differs from the request URI');
      return {
        status: 'failed',
        failureReason: FailureReason.DataSetDoesNotMatchSopClass,
        code: err.code,
        message: err.message,
        ...ids,
      };
    }
    const prior = this.stored.get(identity.sopInstanceUid);
    if (prior) {
      await rm(file.path, { force: true });
      if (prior.sha256 === file.sha256) return { status: 'duplicate', identity, storedPath: prior.storedPath };
      return {
        status: 'failed',
        failureReason: FailureReason.DuplicateSopInstance,
        code: ErrorCode.DicomInvalid,
        message: 'same SOP Instance UID, different content',
        ...ids,
      };
    }
    await mkdir(this.storeDir, { recursive: true });
    const storedPath = path.join(this.storeDir, `${identity.sopInstanceUid}.dcm`);
    await rename(file.path, storedPath);
    this.stored.set(identity.sopInstanceUid, { sha256: file.sha256, storedPath });
    return { status: 'stored', identity, storedPath };
  }
}
