import type { Readable } from 'node:stream';
import { isValidUid } from '../dicom/dataset.js';
import type { ErrorCode } from '../errors.js';
import { DicomwebError, errorCodeOf, normalizeErrorString } from '../errors.js';
import { readReceivedHeader } from '../ingest/received-header.js';
import { FailureReason, type InstanceOutcome, type ReceivedFile } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { getString, Tag } from './dicom-json.js';
import type { DicomwebClient } from './dicomweb-client.js';
import { discardTempFile, spoolToTempFile } from './temp-spool.js';
import {
  describeRequest,
  isDecodableTransferSyntax,
  isNegotiationRefusal,
  type TransferSyntaxRequest,
  transcodeTargetFor,
  transferSyntaxLadder,
} from './transfer-syntax-negotiation.js';

/**
 * One WADO-RS retrieve of a study with transfer syntax negotiation (transfer-syntax-negotiation.ts):
 * the study in its original syntax in one request; if the PACS refuses that (406/400/415/500/501
 * before any part), the next rung of the ladder for the whole study; if every rung is refused,
 * instance by instance (QIDO-RS instance search, PS3.18 §10.6, then WADO-RS per instance, §10.4),
 * so one instance the PACS cannot serve does not cost the others. Instances that arrive in a syntax
 * no local decoder reads are asked for again transcoded; if the PACS cannot, the original is kept.
 */

/** One WADO-RS request made, for logs, audit detail and measurements. */
export interface RetrieveRequestRecord {
  readonly level: 'study' | 'series' | 'instance' | 'transcode';
  readonly transferSyntax: string;
  /** HTTP status, or 0 when no response came (network error, timeout). */
  readonly status: number;
}

export interface StudyRetrieveResult {
  readonly stored: number;
  readonly duplicate: number;
  readonly failed: number;
  /** SOP Instance UIDs that were not stored: refused by the PACS for every syntax, or by the sink. */
  readonly failedInstances: readonly string[];
  /** SOP Instance UIDs stored from a copy the PACS transcoded because the original is undecodable here. */
  readonly transcodedInstances: readonly string[];
  readonly requests: readonly RetrieveRequestRecord[];
  /** The first failure; undefined when every instance the PACS listed was stored. */
  readonly failure?: { readonly code: ErrorCode; readonly message: string } | undefined;
}

/**
 * Part of a study to retrieve (issue 11, late series): a whole series (WADO-RS series retrieve), or
 * only the listed instances of it (WADO-RS instance retrieve each).
 */
export interface RetrieveScope {
  readonly seriesInstanceUid: string;
  readonly sopInstanceUids?: readonly string[] | undefined;
}

export interface StudyRetrieveOptions {
  readonly client: DicomwebClient;
  readonly studyInstanceUid: string;
  /** The node's `poll.transferSyntax`; unset = negotiate from the original. */
  readonly configuredTransferSyntax?: string | undefined;
  readonly tmpDir: string;
  /** The instance sink (never throws). */
  readonly accept: (file: ReceivedFile) => Promise<InstanceOutcome>;
  /**
   * Retrieve only these series / instances instead of the whole study (what a study already retrieved
   * lacks; qido-poller.ts). Each still goes down the transfer syntax ladder.
   */
  readonly only?: readonly RetrieveScope[] | undefined;
  /** NumberOfStudyRelatedInstances from QIDO (or the number of instances `only` asks for), to notice an answer with no instances in it. */
  readonly expectedInstances?: number | null | undefined;
  readonly log: Logger;
  /**
   * Instance-by-instance retrieval stops after this many instances in a row that no rung served
   * (default {@link DEFAULT_MAX_CONSECUTIVE_INSTANCE_FAILURES}): a PACS that answers 500 to
   * everything would otherwise cost three requests per instance per attempt.
   */
  readonly maxConsecutiveInstanceFailures?: number | undefined;
}

export const DEFAULT_MAX_CONSECUTIVE_INSTANCE_FAILURES = 5;

interface Deferred {
  readonly file: ReceivedFile;
  readonly seriesInstanceUid: string;
  readonly sopInstanceUid: string;
  readonly target: string;
}

export async function retrieveStudyNegotiated(o: StudyRetrieveOptions): Promise<StudyRetrieveResult> {
  return new StudyRetrieval(o).run();
}

class StudyRetrieval {
  private stored = 0;
  private duplicate = 0;
  private failed = 0;
  private readonly failedInstances: string[] = [];
  private readonly transcoded: string[] = [];
  private readonly requests: RetrieveRequestRecord[] = [];
  private readonly deferred: Deferred[] = [];
  private failure: { code: ErrorCode; message: string } | undefined;
  private received = 0;

  constructor(private readonly o: StudyRetrieveOptions) {}

  async run(): Promise<StudyRetrieveResult> {
    const ladder = transferSyntaxLadder(this.o.configuredTransferSyntax);
    try {
      if (this.o.only) await this.scoped(ladder, this.o.only);
      else if (!(await this.wholeLevel(ladder, 'study'))) await this.instanceLevel(ladder, await this.listInstances());
      await this.transcodeDeferred();
      if (!this.failure && this.received === 0 && (this.o.expectedInstances ?? 0) > 0) {
        this.fail('pacs-rejected', `WADO-RS answered no instance; QIDO-RS lists ${this.o.expectedInstances}`);
      }
    } catch (err: unknown) {
      this.fail(errorCodeOf(err), normalizeErrorString(err));
    } finally {
      // Instances still waiting for a transcoded copy when something threw are kept as received.
      for (const d of this.deferred.splice(0)) await this.store(d.file, d.sopInstanceUid);
    }
    return {
      stored: this.stored,
      duplicate: this.duplicate,
      failed: this.failed,
      failedInstances: this.failedInstances,
      transcodedInstances: this.transcoded,
      requests: this.requests,
      failure: this.failure,
    };
  }

  /** Only the given series / instances (a study retrieved before that gained some since). */
  private async scoped(ladder: readonly TransferSyntaxRequest[], only: readonly RetrieveScope[]): Promise<void> {
    for (const scope of only) {
      if (scope.sopInstanceUids) {
        await this.instanceLevel(
          ladder,
          scope.sopInstanceUids.map((sop) => ({ series: scope.seriesInstanceUid, sop })),
        );
      } else if (!(await this.wholeLevel(ladder, 'series', scope.seriesInstanceUid))) {
        await this.instanceLevel(ladder, await this.listInstances(scope.seriesInstanceUid));
      }
    }
  }

  /**
   * Whole-study (or whole-series) requests down the ladder; false when every rung was refused before
   * any part.
   */
  private async wholeLevel(
    ladder: readonly TransferSyntaxRequest[],
    level: 'study' | 'series',
    seriesInstanceUid?: string,
  ): Promise<boolean> {
    const { client, studyInstanceUid } = this.o;
    for (const ts of ladder) {
      const before = this.received;
      try {
        if (level === 'series' && seriesInstanceUid)
          await client.retrieveSeries(studyInstanceUid, seriesInstanceUid, this.retrieveOptions(ts));
        else await client.retrieveStudy(studyInstanceUid, this.retrieveOptions(ts));
        this.record(level, ts, 200);
        return true;
      } catch (err: unknown) {
        this.record(level, ts, statusOf(err));
        if (this.received === before && isNegotiationRefusal(err)) {
          this.o.log.info(`WADO-RS ${level} refused in this transfer syntax; trying the next`, {
            studyInstanceUid,
            ...(seriesInstanceUid ? { seriesInstanceUid } : {}),
            transferSyntax: describeRequest(ts),
            status: statusOf(err),
          });
          continue;
        }
        throw err;
      }
    }
    return false;
  }

  /** The study's (or one series') instances as QIDO-RS lists them (PS3.18 §10.6). */
  private async listInstances(seriesInstanceUid?: string): Promise<{ series: string; sop: string }[]> {
    const listed = await this.o.client.searchForInstances(
      this.o.studyInstanceUid,
      seriesInstanceUid,
      {},
      { includefield: [Tag.SeriesInstanceUID, Tag.SOPInstanceUID] },
    );
    return listed.map((ds) => ({
      series: getString(ds, Tag.SeriesInstanceUID) ?? seriesInstanceUid ?? '',
      sop: getString(ds, Tag.SOPInstanceUID) ?? '',
    }));
  }

  /** Instance by instance, each down the ladder; an instance refused on every rung is listed as failed. */
  private async instanceLevel(
    ladder: readonly TransferSyntaxRequest[],
    listed: readonly { series: string; sop: string }[],
  ): Promise<void> {
    const { client, studyInstanceUid } = this.o;
    const maxInRow = this.o.maxConsecutiveInstanceFailures ?? DEFAULT_MAX_CONSECUTIVE_INSTANCE_FAILURES;
    let inRow = 0;
    for (const { series, sop } of listed) {
      if (inRow >= maxInRow) {
        this.o.log.warn('WADO-RS instances refused in a row; not asking for the rest of the study', {
          studyInstanceUid,
          refusedInRow: inRow,
          listed: listed.length,
        });
        break;
      }
      if (!isValidUid(series) || !isValidUid(sop)) continue;
      let lastError: unknown;
      let served = false;
      for (const ts of ladder) {
        const before = this.received;
        try {
          await client.retrieveInstance(studyInstanceUid, series, sop, this.retrieveOptions(ts));
          this.record('instance', ts, 200);
          served = true;
          break;
        } catch (err: unknown) {
          this.record('instance', ts, statusOf(err));
          lastError = err;
          if (this.received === before && isNegotiationRefusal(err)) continue;
          // No response at all: the PACS is down; the rest would fail the same way.
          if (err instanceof DicomwebError && err.status === undefined) throw err;
          break;
        }
      }
      inRow = served ? 0 : inRow + 1;
      if (!served) {
        this.failed++;
        this.failedInstances.push(sop);
        this.fail(errorCodeOf(lastError), normalizeErrorString(lastError));
      }
    }
  }

  /** Ask for a decodable copy of each instance that arrived in a syntax no local decoder reads. */
  private async transcodeDeferred(): Promise<void> {
    const { client, studyInstanceUid, tmpDir } = this.o;
    while (this.deferred.length > 0) {
      const d = this.deferred.shift() as Deferred;
      let copy: ReceivedFile | undefined;
      try {
        await client.retrieveInstance(studyInstanceUid, d.seriesInstanceUid, d.sopInstanceUid, {
          transferSyntax: d.target,
          onInstance: async (body) => {
            const f = await spoolToTempFile(body, tmpDir, 'wado');
            if (copy) await discardTempFile(f);
            else copy = f;
          },
        });
        this.record('transcode', d.target, 200);
      } catch (err: unknown) {
        this.record('transcode', d.target, statusOf(err));
        this.o.log.warn('PACS could not transcode an undecodable instance; keeping the original', {
          sopInstanceUid: d.sopInstanceUid,
          code: errorCodeOf(err),
        });
      }
      // Only a copy of the same instance that our decoders read replaces the original (a PACS may
      // answer with the original again).
      const got = copy ? await headerOf(copy) : undefined;
      if (copy && got && got.sopInstanceUid === d.sopInstanceUid && isDecodableTransferSyntax(got.transferSyntaxUid)) {
        await discardTempFile(d.file);
        this.transcoded.push(d.sopInstanceUid);
        await this.store(copy, d.sopInstanceUid);
      } else {
        if (copy) await discardTempFile(copy);
        await this.store(d.file, d.sopInstanceUid);
      }
    }
  }

  private retrieveOptions(ts: TransferSyntaxRequest) {
    return {
      ...(ts === undefined ? {} : { transferSyntax: ts }),
      onInstance: async (body: Readable) => {
        this.received++;
        await this.onPart(body, ts);
      },
    };
  }

  private async onPart(body: Readable, requested: TransferSyntaxRequest): Promise<void> {
    const file = await spoolToTempFile(body, this.o.tmpDir, 'wado');
    // Unreadable here (undefined): the sink refuses it with its typed reason and audit event.
    const header = await headerOf(file);
    const target = header ? transcodeTargetFor(header.transferSyntaxUid, requested) : undefined;
    if (header && target) {
      this.deferred.push({
        file,
        seriesInstanceUid: header.seriesInstanceUid,
        sopInstanceUid: header.sopInstanceUid,
        target,
      });
      return;
    }
    await this.store(file, header?.sopInstanceUid);
  }

  private async store(file: ReceivedFile, sopInstanceUid: string | undefined): Promise<void> {
    let outcome: InstanceOutcome;
    try {
      outcome = await this.o.accept(file);
    } catch (err: unknown) {
      outcome = {
        status: 'failed',
        failureReason: FailureReason.ProcessingFailure,
        code: errorCodeOf(err),
        message: normalizeErrorString(err),
      };
    }
    if (outcome.status === 'failed' || outcome.storedPath !== file.path) await discardTempFile(file);
    if (outcome.status === 'failed') {
      this.failed++;
      const uid = outcome.sopInstanceUid ?? sopInstanceUid;
      if (uid) this.failedInstances.push(uid);
      this.fail(outcome.code, outcome.message);
    } else if (outcome.status === 'stored') this.stored++;
    else this.duplicate++;
  }

  private fail(code: ErrorCode, message: string): void {
    this.failure ??= { code, message };
  }

  private record(level: RetrieveRequestRecord['level'], ts: TransferSyntaxRequest, status: number): void {
    this.requests.push({ level, transferSyntax: describeRequest(ts), status });
  }
}

function statusOf(err: unknown): number {
  return err instanceof DicomwebError ? (err.status ?? 0) : 0;
}

/** The identity and transfer syntax of a spooled instance, or undefined when its header cannot be read. */
async function headerOf(
  file: ReceivedFile,
): Promise<{ sopInstanceUid: string; seriesInstanceUid: string; transferSyntaxUid: string } | undefined> {
  try {
    const h = await readReceivedHeader(file.path);
    return {
      sopInstanceUid: h.identity.sopInstanceUid,
      seriesInstanceUid: h.identity.seriesInstanceUid,
      transferSyntaxUid: h.header.transferSyntaxUid,
    };
  } catch {
    return undefined;
  }
}
