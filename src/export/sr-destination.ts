import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { RequestorTimeouts } from '../dimse/requestor.js';
import { isStored, type StoreInstanceResult, StoreOutcome, StoreStatus, storeInstances } from '../dimse/store-scu.js';
import { DicomwebError, ErrorCode, isRadScribeError, RadScribeError } from '../errors.js';
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
  send(sr: OutgoingSr): Promise<SentSr>;
  /**
   * Several objects of one draft (the SR and its PDF companion) in one transfer, with one answer
   * per object in the same order. Optional: a destination without it gets one `send` per object.
   */
  sendAll?(objs: readonly OutgoingSr[]): Promise<SendResult[]>;
}

/** Where an object went; `dimseStatus` when a C-STORE SCP answered with a warning (PS3.4 B.2.3). */
export interface SentSr {
  readonly location: string;
  readonly dimseStatus?: number;
}

/** The answer for one object of `sendAll`. */
export type SendResult = ({ readonly ok: true } & SentSr) | { readonly ok: false; readonly error: RadScribeError };

/** Writes `<dir>/<StudyInstanceUID>/<SOPInstanceUID>.dcm` atomically (temp file, fsync, rename). */
export class FolderDestination implements SrDestination {
  readonly location: string;
  constructor(
    readonly name: string,
    private readonly dir: string,
  ) {
    this.location = `file://${dir}`;
  }

  async send(sr: OutgoingSr): Promise<SentSr> {
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

  async send(sr: OutgoingSr): Promise<SentSr> {
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

/** A C-STORE SCP (config `destinations[]` of type `dimse`). */
export interface DimseDestinationOptions {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly timeouts?: Partial<RequestorTimeouts>;
}

/**
 * Sends draft SRs (and their PDF companions, on the same association) to a PACS that speaks only
 * DIMSE, by C-STORE (store-scu.ts). Per instance: success and warnings (B000/B006/B007) are sent,
 * the warning status recorded; A7xx and a lost association are transient (pacs-unavailable, the job
 * retries); every other status or a refused SOP class is permanent (pacs-rejected).
 */
export class DimseDestination implements SrDestination {
  /** `dicom://AET@host:port`: no credentials exist in DIMSE, so this is all there is to say. */
  readonly location: string;
  constructor(
    readonly name: string,
    private readonly opts: DimseDestinationOptions,
  ) {
    this.location = `dicom://${opts.calledAeTitle}@${opts.host}:${opts.port}`;
  }

  async send(sr: OutgoingSr): Promise<SentSr> {
    const [r] = await this.sendAll([sr]);
    if (!r) throw new RadScribeError(ErrorCode.Internal, 'C-STORE: no result for the SR');
    if (!r.ok) throw r.error;
    return r;
  }

  async sendAll(objs: readonly OutgoingSr[]): Promise<SendResult[]> {
    let results: StoreInstanceResult[];
    try {
      results = await storeInstances(
        { host: this.opts.host, port: this.opts.port, calledAeTitle: this.opts.calledAeTitle },
        objs.map((o) => o.part10),
        { callingAeTitle: this.opts.callingAeTitle, ...(this.opts.timeouts ? { timeouts: this.opts.timeouts } : {}) },
      );
    } catch (err: unknown) {
      // No association: the same error for every object (nothing was sent).
      const error = isRadScribeError(err)
        ? err
        : new RadScribeError(ErrorCode.Internal, `C-STORE to ${this.location} failed`, { cause: err });
      return objs.map(() => ({ ok: false, error }));
    }
    return objs.map((o, i): SendResult => {
      const r = results[i];
      if (!r || r.sopInstanceUid !== o.sopInstanceUid)
        return { ok: false, error: new RadScribeError(ErrorCode.Internal, 'C-STORE: results out of order') };
      if (isStored(r.outcome))
        return {
          ok: true,
          location: this.location,
          ...(r.outcome === StoreOutcome.Warning && r.status !== undefined ? { dimseStatus: r.status } : {}),
        };
      // 0x0111 for this very UID: the SCP holds it already, from an earlier send whose answer was
      // lost (the UID is derived from the draft's inputs; same reasoning as StowRsDestination).
      if (r.status === StoreStatus.DuplicateSopInstance)
        return { ok: true, location: this.location, dimseStatus: r.status };
      return {
        ok: false,
        error: new RadScribeError(
          r.outcome === StoreOutcome.Transient ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected,
          `C-STORE to ${this.location}: ${r.reason}`,
        ),
      };
    });
  }
}
