import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { DicomwebError, ErrorCode, RadScribeError } from '../errors.js';
import { FailureReason } from '../ingest/types.js';
import type { DicomwebClient } from '../pacs/dicomweb-client.js';

/** A draft SR ready to leave the gateway. */
export interface OutgoingSr {
  readonly studyInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly part10: Uint8Array;
}

/**
 * Where draft SRs go (config `destinations`). `send` is idempotent: the SR's SOP Instance UID is
 * derived from its inputs, so a retry re-sends the same instance and the receiver keeps one copy.
 */
export interface SrDestination {
  readonly name: string;
  /** Human-readable location without credentials, for audit rows and logs. */
  readonly location: string;
  send(sr: OutgoingSr): Promise<{ location: string }>;
}

/** Writes `<dir>/<StudyInstanceUID>/<SOPInstanceUID>.dcm` atomically (temp file, fsync, rename). */
export class FolderDestination implements SrDestination {
  readonly location: string;
  constructor(
    readonly name: string,
    private readonly dir: string,
  ) {
    this.location = `file://${dir}`;
  }

  async send(sr: OutgoingSr): Promise<{ location: string }> {
    const studyDir = path.join(this.dir, sr.studyInstanceUid);
    const final = path.join(studyDir, `${sr.sopInstanceUid}.dcm`);
    const tmp = `${final}.${process.pid}.tmp`;
    try {
      mkdirSync(studyDir, { recursive: true });
      const fd = openSync(tmp, 'w');
      try {
        writeSync(fd, sr.part10);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, final);
    } catch (err) {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // The directory itself is unusable (the error below says why); nothing was left in it.
      }
      const code = (err as NodeJS.ErrnoException).code === 'ENOSPC' ? ErrorCode.OutOfResources : ErrorCode.Internal;
      throw new RadScribeError(code, `writing SR to folder destination "${this.name}" failed`, { cause: err });
    }
    removeStaleTempFiles(studyDir, `${sr.sopInstanceUid}.dcm.`);
    return { location: final };
  }
}

/**
 * Temp files of the same SR left by a process killed between write and rename (their pid is in the
 * name, so a restarted gateway writes a new one). The SR itself is now in place, so they are
 * garbage; best effort, a failure here does not fail the send.
 */
function removeStaleTempFiles(studyDir: string, prefix: string): void {
  try {
    for (const name of readdirSync(studyDir)) {
      if (name.startsWith(prefix) && name.endsWith('.tmp')) rmSync(path.join(studyDir, name), { force: true });
    }
  } catch {
    // The SR was written; a leftover temp file is only litter.
  }
}

/**
 * Sends the SR into the same study on a PACS by STOW-RS (PS3.18 §10.5). Success requires the
 * instance in the Referenced SOP Sequence; a Failed SOP Sequence entry is classified by its Failure
 * Reason: A7xx (out of resources) is transient, everything else permanent (dicom-sr-and-audit.md §6).
 */
export class StowRsDestination implements SrDestination {
  constructor(
    readonly name: string,
    private readonly client: DicomwebClient,
    readonly location: string,
  ) {}

  async send(sr: OutgoingSr): Promise<{ location: string }> {
    const res = await this.client.storeInstances(sr.studyInstanceUid, [sr.part10]);
    const ok = res.referenced.find((r) => r.sopInstanceUid === sr.sopInstanceUid);
    if (ok) return { location: ok.retrieveUrl ?? `${this.location}/studies/${sr.studyInstanceUid}` };
    const failed = res.failed.find((f) => f.sopInstanceUid === sr.sopInstanceUid) ?? res.failed[0];
    const reason = failed?.failureReason;
    // 0x0111 Duplicate SOP Instance (PS3.4 B.2.3) for this very SR: the PACS already holds it. The
    // UID is derived from study, model and sources, so that copy came from us — a send whose answer
    // a crash kept from the ledger, or a re-run whose Content Time differs. Refusing it would fail
    // the job for good and leave the study without a recorded export; the PACS keeps one copy.
    if (failed?.sopInstanceUid === sr.sopInstanceUid && reason === FailureReason.DuplicateSopInstance) {
      return { location: `${this.location}/studies/${sr.studyInstanceUid}` };
    }
    const transient = reason !== undefined && (reason & 0xff00) === 0xa700;
    throw new DicomwebError(
      transient ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected,
      'POST',
      `${this.location}/studies/${sr.studyInstanceUid}`,
      res.httpStatus,
      reason === undefined
        ? 'SR not in the STOW-RS response'
        : `SR refused with Failure Reason 0x${reason.toString(16).padStart(4, '0').toUpperCase()}`,
    );
  }
}
