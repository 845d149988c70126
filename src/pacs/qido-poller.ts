import { isValidUid } from '../dicom/dataset.js';
import type { ErrorCode as ErrorCodeT } from '../errors.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RETRYABLE_CODES } from '../errors.js';
import type { RemoteStudyTracker } from '../ingest/remote-study-tracker.js';
import type { InstanceOutcome, InstanceSink } from '../ingest/types.js';
import { ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import { getString, Tag } from './dicom-json.js';
import type { DicomwebClient } from './dicomweb-client.js';
import { discardTempFile, spoolToTempFile } from './temp-spool.js';

/**
 * Pull ingest from one remote DICOMweb node: QIDO-RS search for recent studies (PS3.18 §10.6), then
 * WADO-RS retrieve of each study not yet retrieved (§10.4). A self-rescheduling async loop, not
 * node-cron (STYLE §2.1): the next poll is scheduled only after the previous one finished, so polls
 * never overlap, and errors back off exponentially.
 */

export interface RemoteNode {
  readonly name: string;
  readonly client: DicomwebClient;
  /** Extra QIDO match keys, e.g. { ModalitiesInStudy: 'CR' } (PS3.18 §8.3.4). */
  readonly query?: Readonly<Record<string, string>>;
}

export interface RetrieveCounts {
  readonly stored: number;
  readonly duplicate: number;
  readonly failed: number;
}

export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

export const DEFAULT_QIDO_POLL_INTERVAL_MS = 60_000;
/** StudyDate range reaches this many days back; `Infinity` sends no StudyDate key. */
export const DEFAULT_QIDO_LOOKBACK_DAYS = 1;
export const DEFAULT_QIDO_PAGE_SIZE = 100;
/** Safety stop for a server that ignores `offset` and returns the same page forever. */
export const DEFAULT_QIDO_MAX_PAGES = 100;
export const DEFAULT_QIDO_BACKOFF: BackoffOptions = { initialMs: 5_000, maxMs: 300_000, factor: 2 };

export const QIDO_POLLER_DEFAULTS = {
  intervalMs: DEFAULT_QIDO_POLL_INTERVAL_MS,
  lookbackDays: DEFAULT_QIDO_LOOKBACK_DAYS,
  pageSize: DEFAULT_QIDO_PAGE_SIZE,
  maxPages: DEFAULT_QIDO_MAX_PAGES,
  backoff: DEFAULT_QIDO_BACKOFF,
} as const;

export interface QidoPollerOptions {
  readonly node: RemoteNode;
  readonly sink: InstanceSink;
  readonly tracker: RemoteStudyTracker;
  /** Where retrieved instances are spooled before the sink takes them. */
  readonly tmpDir: string;
  readonly intervalMs?: number | undefined;
  readonly lookbackDays?: number | undefined;
  readonly pageSize?: number | undefined;
  readonly maxPages?: number | undefined;
  readonly backoff?: BackoffOptions | undefined;
  /** WADO-RS transfer-syntax Accept parameter (see media-type.ts `wadoAcceptHeader`). */
  readonly transferSyntax?: string | undefined;
  /** Audit hooks (the lead wires them to the audit table); their errors are logged, never fatal. */
  readonly onQuery?:
    | ((node: string, query: Readonly<Record<string, string>>, resultCount: number) => Promise<void> | void)
    | undefined;
  readonly onRetrieve?:
    | ((node: string, studyInstanceUid: string, counts: RetrieveCounts) => Promise<void> | void)
    | undefined;
  readonly logger?: Logger | undefined;
  /** Clock, for tests of the StudyDate window. */
  readonly now?: (() => Date) | undefined;
}

export interface PollSummary {
  readonly studiesFound: number;
  readonly studiesRetrieved: number;
  readonly studiesFailed: number;
  readonly instances: RetrieveCounts;
}

/** DICOM DA (PS3.5 Table 6.2-1), UTC. */
function toDA(d: Date): string {
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}

export class QidoPoller {
  private readonly o: Required<
    Pick<QidoPollerOptions, 'intervalMs' | 'lookbackDays' | 'pageSize' | 'maxPages' | 'backoff'>
  > &
    QidoPollerOptions;
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<unknown> | undefined;
  private running = false;
  private consecutiveFailures = 0;

  constructor(options: QidoPollerOptions) {
    this.o = {
      ...options,
      intervalMs: options.intervalMs ?? QIDO_POLLER_DEFAULTS.intervalMs,
      lookbackDays: options.lookbackDays ?? QIDO_POLLER_DEFAULTS.lookbackDays,
      pageSize: options.pageSize ?? QIDO_POLLER_DEFAULTS.pageSize,
      maxPages: options.maxPages ?? QIDO_POLLER_DEFAULTS.maxPages,
      backoff: options.backoff ?? QIDO_POLLER_DEFAULTS.backoff,
    };
    this.log = options.logger ?? childLogger('qido-poller', { node: options.node.name });
  }

  get nodeName(): string {
    return this.o.node.name;
  }

  /** Start polling now and then every `intervalMs` (or the backoff delay after a failed poll). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stop scheduling and wait for an in-flight poll to finish. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const p = this.pollOnce().then(
        () => {
          this.consecutiveFailures = 0;
          return this.o.intervalMs;
        },
        (err: unknown) => {
          this.consecutiveFailures++;
          const b = this.o.backoff;
          const delay = Math.min(b.maxMs, b.initialMs * b.factor ** (this.consecutiveFailures - 1));
          const code = errorCodeOf(err);
          this.log.log(RETRYABLE_CODES.has(code) ? 'warn' : 'error', 'QIDO poll failed', {
            code,
            error: normalizeErrorString(err),
            retryInMs: delay,
            consecutiveFailures: this.consecutiveFailures,
          });
          return delay;
        },
      );
      this.inFlight = p;
      void p.then((next) => {
        this.inFlight = undefined;
        this.schedule(next);
      });
    }, delayMs);
    this.timer.unref?.();
  }

  /** One poll: search (all pages), retrieve every new study. Throws only when the search itself fails. */
  async pollOnce(): Promise<PollSummary> {
    const { node } = this.o;
    const query: Record<string, string> = { ...node.query };
    if (Number.isFinite(this.o.lookbackDays)) {
      // Range matching on StudyDate (PS3.4 C.2.2.2.5). Studies without a StudyDate do not match a
      // range; such a node needs lookbackDays = Infinity plus its own filters.
      const now = this.o.now?.() ?? new Date();
      const from = new Date(now.getTime() - this.o.lookbackDays * 86_400_000);
      query.StudyDate = `${toDA(from)}-${toDA(now)}`;
    }
    const studies: string[] = [];
    const seen = new Set<string>();
    for (let page = 0; page < this.o.maxPages; page++) {
      const results = await node.client.searchForStudies(query, {
        limit: this.o.pageSize,
        offset: page * this.o.pageSize,
        includefield: [Tag.StudyInstanceUID],
      });
      let fresh = 0;
      for (const ds of results) {
        const uid = getString(ds, Tag.StudyInstanceUID);
        if (!isValidUid(uid) || seen.has(uid)) continue;
        seen.add(uid);
        studies.push(uid);
        fresh++;
      }
      // A short page is the last one; a page with nothing new means the server ignores offset.
      // Orthanc 1.10 applies limit/offset before filtering on ModalitiesInStudy, so with such a
      // filter a page can come back short early: give those nodes a pageSize above one poll's yield.
      if (results.length < this.o.pageSize || fresh === 0) break;
    }
    await this.hook(() => this.o.onQuery?.(node.name, query, studies.length));
    this.log.info('QIDO search done', { studies: studies.length });

    let studiesRetrieved = 0;
    let studiesFailed = 0;
    const total = { stored: 0, duplicate: 0, failed: 0 };
    for (const studyUid of studies) {
      if (await this.o.tracker.isRetrieved(node.name, studyUid)) continue;
      // Before anything is retrieved (issue 9): with the storage below its watermark or reserve the
      // poll stops here with storage-full, backs off, and the study stays unretrieved (not failed:
      // the study is not at fault, so it does not use up a retry).
      await this.o.sink.admit?.(0, {
        via: ReceivedVia.WadoRs,
        actor: node.name,
        remoteAddress: node.client.host,
        expectedStudyInstanceUid: studyUid,
      });
      await this.o.tracker.markSeen(node.name, studyUid);
      const counts = { stored: 0, duplicate: 0, failed: 0 };
      let firstFailure: { code: ErrorCodeT; message: string } | undefined;
      try {
        await node.client.retrieveStudy(studyUid, {
          ...(this.o.transferSyntax ? { transferSyntax: this.o.transferSyntax } : {}),
          onInstance: async (body) => {
            const outcome = await this.acceptInstance(body);
            if (outcome.status === 'failed') {
              counts.failed++;
              firstFailure ??= { code: outcome.code, message: outcome.message };
            } else counts[outcome.status]++;
          },
        });
      } catch (err: unknown) {
        firstFailure = { code: errorCodeOf(err), message: normalizeErrorString(err) };
      }
      total.stored += counts.stored;
      total.duplicate += counts.duplicate;
      total.failed += counts.failed;
      if (firstFailure) {
        studiesFailed++;
        await this.o.tracker.markFailed(node.name, studyUid, firstFailure.code, firstFailure.message);
        this.log.warn('WADO-RS study retrieve failed', {
          studyInstanceUid: studyUid,
          code: firstFailure.code,
          ...counts,
        });
      } else {
        studiesRetrieved++;
        await this.o.tracker.markRetrieved(node.name, studyUid);
        this.log.info('WADO-RS study retrieved', { studyInstanceUid: studyUid, ...counts });
      }
      await this.hook(() => this.o.onRetrieve?.(node.name, studyUid, counts));
    }
    return { studiesFound: studies.length, studiesRetrieved, studiesFailed, instances: total };
  }

  private async acceptInstance(body: import('node:stream').Readable): Promise<InstanceOutcome> {
    const file = await spoolToTempFile(body, this.o.tmpDir, 'wado');
    let outcome: InstanceOutcome;
    try {
      outcome = await this.o.sink.accept(file, {
        via: ReceivedVia.WadoRs,
        actor: this.o.node.name,
        remoteAddress: this.o.node.client.host,
      });
    } catch (err: unknown) {
      outcome = { status: 'failed', failureReason: 0x0110, code: errorCodeOf(err), message: normalizeErrorString(err) };
    }
    if (outcome.status === 'failed' || outcome.storedPath !== file.path) await discardTempFile(file);
    return outcome;
  }

  private async hook(fn: () => Promise<void> | void | undefined): Promise<void> {
    try {
      await fn();
    } catch (err: unknown) {
      this.log.error('audit hook failed', {
        code: errorCodeOf(err) ?? ErrorCode.Internal,
        error: normalizeErrorString(err),
      });
    }
  }
}
