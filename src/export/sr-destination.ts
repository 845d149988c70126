import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parsePart10 } from '../dicom/dataset.js';
import type { DicomTlsClientConfig } from '../dimse/dicom-tls.js';
import type { RequestorTimeouts } from '../dimse/requestor.js';
import { isStored, type StoreInstanceResult, StoreOutcome, StoreStatus, storeInstances } from '../dimse/store-scu.js';
import {
  DicomwebError,
  ErrorCode,
  errorCodeOf,
  normalizeErrorString,
  RadScribeError,
  RETRYABLE_CODES,
} from '../errors.js';
import { FailureReason } from '../ingest/types.js';
import type { DicomwebClient, StowResult } from '../pacs/dicomweb-client.js';
import { compareFingerprints, contentFingerprint } from './stored-fingerprint.js';

/** A draft SR ready to leave the gateway. */
export interface OutgoingSr {
  readonly studyInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly part10: Uint8Array;
}

/** How an instance reached the destination: sent now, or found there already with our content. */
export const Delivery = {
  Stored: 'stored',
  /** The destination held an instance with this UID whose content is the same as ours (issue 11). */
  AlreadyPresentIdentical: 'already-present-identical',
} as const;
export type Delivery = (typeof Delivery)[keyof typeof Delivery];

/** One instance's outcome of a {@link SrDestination.sendAll}. */
export type InstanceSendResult =
  | {
      readonly sopInstanceUid: string;
      readonly ok: true;
      readonly location: string;
      readonly delivery: Delivery;
      /** A C-STORE SCP's warning or duplicate status (PS3.4 B.2.3), recorded with the export. */
      readonly dimseStatus?: number;
    }
  | { readonly sopInstanceUid: string; readonly ok: false; readonly error: RadScribeError };

/**
 * Where draft SRs go (config `destinations`). Sends are idempotent: the SR's SOP Instance UID is
 * derived from its inputs, so a retry re-sends the same instance and the receiver keeps one copy.
 * `sendAll` sends a draft's objects (the SR and its PDF companion) and answers per instance, so
 * the caller records each and a retry resends only what did not arrive.
 */
export interface SrDestination {
  readonly name: string;
  /** Human-readable location without credentials, for audit rows and logs. */
  readonly location: string;
  send(sr: OutgoingSr): Promise<{ location: string }>;
  sendAll(objs: readonly OutgoingSr[]): Promise<InstanceSendResult[]>;
}

/** The thrown value as a RadScribeError (unclassified → internal). */
function asRadScribeError(err: unknown): RadScribeError {
  return err instanceof RadScribeError
    ? err
    : new RadScribeError(errorCodeOf(err), normalizeErrorString(err), { cause: err });
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

  async sendAll(objs: readonly OutgoingSr[]): Promise<InstanceSendResult[]> {
    const out: InstanceSendResult[] = [];
    for (const o of objs) {
      try {
        out.push({ sopInstanceUid: o.sopInstanceUid, ok: true, delivery: Delivery.Stored, ...(await this.send(o)) });
      } catch (err) {
        out.push({ sopInstanceUid: o.sopInstanceUid, ok: false, error: asRadScribeError(err) });
      }
    }
    return out;
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

/** What a STOW-RS response says about one instance we sent (PS3.18 §10.5.3). */
export const StowInstanceStatus = {
  /** In the Referenced SOP Sequence without a Warning Reason. */
  Stored: 'stored',
  /**
   * The PACS says it holds the instance but not (only) ours: 0x0111 Duplicate SOP Instance, a
   * Warning Reason or an HTTP Warning (coercion, "already stored"), a 409 that names no other reason,
   * or the instance missing from an otherwise successful response. Only the stored copy can tell.
   */
  CheckStored: 'check-stored',
  /** A7xx Refused: Out of Resources (PS3.4 B.2.3): try again later. */
  Transient: 'transient',
  /** Any other Failure Reason: resending the same bytes gets the same answer. */
  Permanent: 'permanent',
} as const;
export type StowInstanceStatus = (typeof StowInstanceStatus)[keyof typeof StowInstanceStatus];

export interface StowInstanceOutcome {
  readonly status: StowInstanceStatus;
  /** The response says the PACS had the instance already (0x0111, a 409, an "already stored" Warning). */
  readonly alreadyStored?: true;
  readonly failureReason?: number;
  readonly warningReason?: number;
  readonly retrieveUrl?: string;
}

/** 0xA7xx Refused: Out of Resources (PS3.4 Annex B, C-STORE statuses; PS3.18 Table 10.5.3-2). */
export const isOutOfResourcesReason = (reason: number): boolean => (reason & 0xff00) === 0xa700;

/**
 * Per-instance reading of a STOW-RS response for the instances we sent (`sent`, in order). A
 * multi-instance send (the SR and its PDF companion) may partly succeed (HTTP 202, PS3.18
 * §10.5.3.1): each instance gets its own status, so only the failed ones are sent again.
 */
export function classifyStowResult(res: StowResult, sent: readonly string[]): Map<string, StowInstanceOutcome> {
  const out = new Map<string, StowInstanceOutcome>();
  // An HTTP Warning that says the instance was there already (some servers answer a duplicate with
  // 200/202 and `Warning: 299 … already stored`) applies to every referenced instance.
  const alreadyWarning = res.warning !== undefined && /already|duplicate|exist/i.test(res.warning);
  for (const uid of sent) {
    const ref = res.referenced.find((r) => r.sopInstanceUid === uid);
    const failed = res.failed.find((f) => f.sopInstanceUid === uid);
    if (ref) {
      const warned = ref.warningReason !== undefined || alreadyWarning;
      out.set(uid, {
        status: warned ? StowInstanceStatus.CheckStored : StowInstanceStatus.Stored,
        ...(alreadyWarning ? { alreadyStored: true as const } : {}),
        ...(ref.warningReason !== undefined ? { warningReason: ref.warningReason } : {}),
        ...(ref.retrieveUrl ? { retrieveUrl: ref.retrieveUrl } : {}),
      });
      continue;
    }
    // A Failed SOP Sequence item without a SOP Instance UID is taken to be ours only when we sent one.
    const reason = (failed ?? (sent.length === 1 ? res.failed[0] : undefined))?.failureReason;
    if (reason === undefined) {
      out.set(uid, { status: StowInstanceStatus.CheckStored });
    } else if (reason === FailureReason.DuplicateSopInstance) {
      out.set(uid, { status: StowInstanceStatus.CheckStored, alreadyStored: true, failureReason: reason });
    } else if (res.httpStatus === 409 && reason === FailureReason.ProcessingFailure) {
      // 409 Conflict with no specific reason (parseStowResponse fills in 0x0110): a duplicate as
      // likely as not; the stored copy decides.
      out.set(uid, { status: StowInstanceStatus.CheckStored, alreadyStored: true, failureReason: reason });
    } else {
      out.set(uid, {
        status: isOutOfResourcesReason(reason) ? StowInstanceStatus.Transient : StowInstanceStatus.Permanent,
        failureReason: reason,
      });
    }
  }
  return out;
}

/** Our SR's UID is held by the destination with other content (issue 11). Permanent. */
export class ExportConflictError extends RadScribeError {
  override name = 'ExportConflictError';
  /** Where the two differ: tag paths only, never values (no PHI). */
  readonly differences: readonly string[];
  constructor(message: string, differences: readonly string[]) {
    super(ErrorCode.ExportConflict, message);
    this.differences = differences;
  }
}

/** When to compare the PACS's copy with ours after a send. */
export const VerifyStored = {
  /**
   * After every send. Orthanc 1.10 + orthanc-dicomweb 1.7 answer a second STOW-RS of the same SOP
   * Instance UID with plain success (Referenced SOP Sequence, no Warning) whatever its content, and
   * keep the first copy (OverwriteInstances false, its default) or replace it (true): only reading
   * the copy back tells "identical" from "conflict" there. Orthanc also lists an instance its Lua
   * ReceivedInstanceFilter refused as stored; the read-back finds it missing and it is resent
   * (test/e2e/stow-export-orthanc.e2e.test.ts).
   */
  Always: 'always',
  /** Only when the response says the instance was there already (0x0111, 409, Warning). */
  OnDuplicate: 'on-duplicate',
} as const;
export type VerifyStored = (typeof VerifyStored)[keyof typeof VerifyStored];

export const DEFAULT_STOW_VERIFY: VerifyStored = VerifyStored.Always;
/**
 * Sends of one draft within one job attempt; what is still failing after them fails the job with a
 * retryable code, and the job queue's own backoff (job-queue.ts) takes over, resending the staged
 * bytes (draft-export.ts), not re-running the model.
 */
export const DEFAULT_STOW_ATTEMPTS = 3;
/** Delay before resend n+1 = base · 2^(n-1), capped: the job queue's formula at a shorter scale. */
export const DEFAULT_STOW_BACKOFF_BASE_MS = 1_000;
export const DEFAULT_STOW_BACKOFF_MAX_MS = 30_000;

export interface StowRsDestinationOptions {
  readonly verify?: VerifyStored;
  readonly attempts?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Sends the draft into the same study on a PACS by STOW-RS (PS3.18 §10.5), all its objects in one
 * request, and reads the answer per instance (classifyStowResult). Transient failures (A7xx, 5xx,
 * 429, timeouts, network) of some instances are resent — only those — up to `attempts` times with
 * exponential backoff; other Failure Reasons are permanent (dicom-sr-and-audit.md §6). An instance
 * the PACS says it holds already is success only when the copy it holds has our content (WADO-RS
 * metadata, stored-fingerprint.ts): "already present, identical"; another content is an
 * export-conflict; a copy that cannot be read is transient.
 */
export class StowRsDestination implements SrDestination {
  readonly #verify: VerifyStored;
  readonly #attempts: number;
  readonly #backoffBaseMs: number;
  readonly #backoffMaxMs: number;

  constructor(
    readonly name: string,
    private readonly client: DicomwebClient,
    readonly location: string,
    options: StowRsDestinationOptions = {},
  ) {
    this.#verify = options.verify ?? DEFAULT_STOW_VERIFY;
    this.#attempts = Math.max(1, options.attempts ?? DEFAULT_STOW_ATTEMPTS);
    this.#backoffBaseMs = options.backoffBaseMs ?? DEFAULT_STOW_BACKOFF_BASE_MS;
    this.#backoffMaxMs = options.backoffMaxMs ?? DEFAULT_STOW_BACKOFF_MAX_MS;
  }

  async send(sr: OutgoingSr): Promise<{ location: string }> {
    const [r] = await this.sendAll([sr]);
    if (!r) throw new RadScribeError(ErrorCode.Internal, 'no send result');
    if (!r.ok) throw r.error;
    return { location: r.location };
  }

  async sendAll(objs: readonly OutgoingSr[]): Promise<InstanceSendResult[]> {
    const results = new Map<string, InstanceSendResult>();
    let pending = [...objs];
    for (let attempt = 1; pending.length > 0; attempt++) {
      const last = attempt >= this.#attempts;
      if (attempt > 1) await sleep(Math.min(this.#backoffMaxMs, this.#backoffBaseMs * 2 ** (attempt - 2)));
      const again: OutgoingSr[] = [];
      // A failure to keep trying: transient ones go round again until the attempts are spent.
      const failed = (o: OutgoingSr, error: RadScribeError): void => {
        if (!last && RETRYABLE_CODES.has(error.code)) again.push(o);
        else results.set(o.sopInstanceUid, { sopInstanceUid: o.sopInstanceUid, ok: false, error });
      };
      const study = pending[0]?.studyInstanceUid;
      let res: StowResult;
      try {
        res = await this.client.storeInstances(
          study,
          pending.map((o) => o.part10),
        );
      } catch (err) {
        // The whole request failed (network, timeout, 5xx, a 4xx): every instance in it shares it.
        for (const o of pending) failed(o, asRadScribeError(err));
        pending = again;
        continue;
      }
      const outcomes = classifyStowResult(
        res,
        pending.map((o) => o.sopInstanceUid),
      );
      for (const o of pending) {
        const outcome = outcomes.get(o.sopInstanceUid) ?? { status: StowInstanceStatus.CheckStored };
        const url = `${this.location}/studies/${o.studyInstanceUid}`;
        if (outcome.status === StowInstanceStatus.Transient || outcome.status === StowInstanceStatus.Permanent) {
          const reason = outcome.failureReason ?? FailureReason.ProcessingFailure;
          failed(
            o,
            new DicomwebError(
              outcome.status === StowInstanceStatus.Transient ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected,
              'POST',
              url,
              res.httpStatus,
              `instance refused with Failure Reason 0x${reason.toString(16).padStart(4, '0').toUpperCase()}`,
            ),
          );
          continue;
        }
        const location = outcome.retrieveUrl ?? url;
        if (outcome.status === StowInstanceStatus.Stored && this.#verify === VerifyStored.OnDuplicate) {
          results.set(o.sopInstanceUid, {
            sopInstanceUid: o.sopInstanceUid,
            ok: true,
            location,
            delivery: Delivery.Stored,
          });
          continue;
        }
        try {
          await this.#checkStored(o, outcome);
          results.set(o.sopInstanceUid, {
            sopInstanceUid: o.sopInstanceUid,
            ok: true,
            location,
            // "Already present, identical" only when the PACS said it had it: a response that merely
            // left the instance out, or warned of a coercion, stored it now as far as we know.
            delivery: outcome.alreadyStored ? Delivery.AlreadyPresentIdentical : Delivery.Stored,
          });
        } catch (err) {
          failed(o, asRadScribeError(err));
        }
      }
      pending = again;
    }
    return objs.map(
      (o) =>
        results.get(o.sopInstanceUid) ?? {
          sopInstanceUid: o.sopInstanceUid,
          ok: false,
          error: new RadScribeError(ErrorCode.Internal, 'instance not sent'),
        },
    );
  }

  /**
   * Read the PACS's copy (WADO-RS metadata) and compare its fingerprint with ours. Throws
   * export-conflict when they differ, pacs-unavailable when the copy cannot be read (a PACS that
   * answered "stored" or "already there" and shows nothing is answering a moment too early, or is
   * down: transient either way).
   */
  async #checkStored(o: OutgoingSr, outcome: StowInstanceOutcome): Promise<void> {
    const ours = parsePart10(o.part10, { untilPixelData: false });
    const series = String(ours.dataset.SeriesInstanceUID ?? '');
    const url = `${this.location}/studies/${o.studyInstanceUid}/series/${series}/instances/${o.sopInstanceUid}/metadata`;
    let stored: Awaited<ReturnType<DicomwebClient['retrieveInstanceMetadata']>>;
    try {
      stored = await this.client.retrieveInstanceMetadata(o.studyInstanceUid, series, o.sopInstanceUid);
    } catch (err) {
      throw new DicomwebError(
        ErrorCode.PacsUnavailable,
        'GET',
        url,
        (err as { status?: number }).status,
        `cannot read the stored copy to compare: ${normalizeErrorString(err)}`,
        { cause: err },
      );
    }
    if (!stored) throw new DicomwebError(ErrorCode.PacsUnavailable, 'GET', url, undefined, 'stored copy not found');
    const cmp = compareFingerprints(contentFingerprint(ours.dict), contentFingerprint(stored));
    if (!cmp.same) {
      const why =
        outcome.failureReason !== undefined
          ? `Failure Reason 0x${outcome.failureReason.toString(16).padStart(4, '0').toUpperCase()}`
          : outcome.warningReason !== undefined
            ? `Warning Reason 0x${outcome.warningReason.toString(16).padStart(4, '0').toUpperCase()}`
            : 'success';
      throw new ExportConflictError(
        `${this.location}: the PACS answered ${why} but holds other content under SOP Instance UID ${o.sopInstanceUid} (differs at ${cmp.differences.join(', ')})`,
        cmp.differences,
      );
    }
  }
}

/** A C-STORE SCP (config `destinations[]` of type `dimse`). */
export interface DimseDestinationOptions {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly timeouts?: Partial<RequestorTimeouts>;
  /** DICOM TLS (PS3.15 B.1/B.9): verify the SCP's certificate, present ours. */
  readonly tls?: DicomTlsClientConfig;
}

/**
 * Sends draft SRs (and their PDF companions, on the same association) to a PACS that speaks only
 * DIMSE, by C-STORE (store-scu.ts). Per instance: success and warnings (B000/B006/B007) are sent,
 * the warning status recorded; A7xx and a lost association are transient (pacs-unavailable, the job
 * retries); every other status or a refused SOP class is permanent (pacs-rejected). DIMSE has no
 * way to read the stored copy back, so a 0x0111 duplicate for this very UID is taken as delivered
 * (recorded with its status, delivery `stored`, never "identical": nothing was compared).
 */
export class DimseDestination implements SrDestination {
  /** `dicom://AET@host:port` (`dicoms://` over TLS): no credentials exist in DIMSE, so this is all there is to say. */
  readonly location: string;
  constructor(
    readonly name: string,
    private readonly opts: DimseDestinationOptions,
  ) {
    this.location = `${opts.tls ? 'dicoms' : 'dicom'}://${opts.calledAeTitle}@${opts.host}:${opts.port}`;
  }

  async send(sr: OutgoingSr): Promise<{ location: string }> {
    const [r] = await this.sendAll([sr]);
    if (!r) throw new RadScribeError(ErrorCode.Internal, 'C-STORE: no result for the SR');
    if (!r.ok) throw r.error;
    return { location: r.location };
  }

  async sendAll(objs: readonly OutgoingSr[]): Promise<InstanceSendResult[]> {
    let results: StoreInstanceResult[];
    try {
      results = await storeInstances(
        { host: this.opts.host, port: this.opts.port, calledAeTitle: this.opts.calledAeTitle },
        objs.map((o) => o.part10),
        {
          callingAeTitle: this.opts.callingAeTitle,
          ...(this.opts.timeouts ? { timeouts: this.opts.timeouts } : {}),
          ...(this.opts.tls ? { tls: this.opts.tls } : {}),
        },
      );
    } catch (err: unknown) {
      // No association: the same error for every object (nothing was sent).
      const error = asRadScribeError(err);
      return objs.map((o) => ({ sopInstanceUid: o.sopInstanceUid, ok: false, error }));
    }
    return objs.map((o, i): InstanceSendResult => {
      const r = results[i];
      const uid = o.sopInstanceUid;
      if (!r || r.sopInstanceUid !== uid)
        return {
          sopInstanceUid: uid,
          ok: false,
          error: new RadScribeError(ErrorCode.Internal, 'C-STORE: results out of order'),
        };
      if (isStored(r.outcome))
        return {
          sopInstanceUid: uid,
          ok: true,
          location: this.location,
          delivery: Delivery.Stored,
          ...(r.outcome === StoreOutcome.Warning && r.status !== undefined ? { dimseStatus: r.status } : {}),
        };
      // 0x0111 for this very UID: the SCP holds it already, from an earlier send whose answer was
      // lost (the UID is derived from the draft's inputs; same reasoning as StowRsDestination).
      if (r.status === StoreStatus.DuplicateSopInstance)
        return {
          sopInstanceUid: uid,
          ok: true,
          location: this.location,
          delivery: Delivery.Stored,
          dimseStatus: r.status,
        };
      return {
        sopInstanceUid: uid,
        ok: false,
        error: new RadScribeError(
          r.outcome === StoreOutcome.Transient ? ErrorCode.PacsUnavailable : ErrorCode.PacsRejected,
          `C-STORE to ${this.location}: ${r.reason}`,
        ),
      };
    });
  }
}
