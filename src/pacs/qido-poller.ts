import type { Queryable } from '../db/pool.js';
import { isValidUid } from '../dicom/dataset.js';
import type { ErrorCode as ErrorCodeT } from '../errors.js';
import { ErrorCode, errorCodeOf, normalizeErrorString, RETRYABLE_CODES } from '../errors.js';
import { type FailureRecorded, type RemoteStudyTracker, RetrieveDecision } from '../ingest/remote-study-tracker.js';
import type { InstanceSink } from '../ingest/types.js';
import { ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import { getNumber, getString, Tag } from './dicom-json.js';
import type { DicomwebClient } from './dicomweb-client.js';
import { type RetrieveRequestRecord, type RetrieveScope, retrieveStudyNegotiated } from './study-retrieval.js';

/**
 * Pull ingest from one remote DICOMweb node: QIDO-RS search for recent studies (PS3.18 §10.6), then
 * WADO-RS retrieve of each study not yet retrieved (§10.4). A study retrieved before that the PACS now
 * lists with another NumberOfStudyRelatedInstances is compared series by series
 * (NumberOfSeriesRelatedInstances, then the instance list of a series that has more) with what is
 * held, and only the missing series or instances are retrieved (issue 11, late series); the study
 * lifecycle then opens the study's next version (src/ingest/study-lifecycle.ts). A self-rescheduling async loop, not
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

/** How one retrieve attempt of a study ended (audit outcome 0 / 4 / 8). Closed set. */
export const RetrieveOutcome = {
  /** Every instance the PACS listed is stored. */
  Retrieved: 'retrieved',
  /** The attempt failed (wholly or partly); another follows after the backoff. */
  Retrying: 'retrying',
  /** The attempt that reached maxRetrieveAttempts failed: no more until the study changes. */
  GivenUp: 'given-up',
} as const;
export type RetrieveOutcome = (typeof RetrieveOutcome)[keyof typeof RetrieveOutcome];

/** What the retrieve hook (and through it the audit trail) learns about one attempt. */
export interface RetrieveReport extends RetrieveCounts {
  readonly outcome: RetrieveOutcome;
  /** 1-based number of this attempt since the study was first seen or last reopened. */
  readonly attempt: number;
  readonly maxAttempts: number;
  readonly errorCode?: ErrorCodeT | undefined;
  /** SOP Instance UIDs not stored in this attempt (UIDs only, no PHI). */
  readonly failedInstances: readonly string[];
  /** SOP Instance UIDs stored from a PACS-transcoded copy (original undecodable here). */
  readonly transcodedInstances: readonly string[];
  /** WADO-RS requests made, as `level transfer-syntax → status`. */
  readonly requests: readonly RetrieveRequestRecord[];
  readonly nextAttemptAt?: Date | null | undefined;
  /** True when the study had failed or been given up and was retried because it changed or was reopened. */
  readonly reopened: boolean;
  /** Set when only late series / instances of a study retrieved before were asked for: those series. */
  readonly lateSeries?: readonly string[] | undefined;
}

/**
 * What the gateway holds of a study, for the late-series comparison (the instance repository and the
 * export ledger; the poller owns no SQL).
 */
export interface HeldStudyView {
  /** SOP Instance UIDs ever stored of the study (retention-deleted ones too), by Series Instance UID. */
  heldInstancesBySeries(studyInstanceUid: string): Promise<ReadonlyMap<string, ReadonlySet<string>>>;
  /** Series of the study that hold our own exported objects: never retrieved back (they are not late series). */
  exportedSeriesOf(studyInstanceUid: string): Promise<ReadonlySet<string>>;
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
/**
 * Failed retrieves of one study before it is given up (issue 9). Five attempts spaced by the poll
 * backoff ride out a PACS restart; a study the PACS can never serve stops costing a request a poll.
 */
export const DEFAULT_MAX_RETRIEVE_ATTEMPTS = 5;

export const QIDO_POLLER_DEFAULTS = {
  intervalMs: DEFAULT_QIDO_POLL_INTERVAL_MS,
  lookbackDays: DEFAULT_QIDO_LOOKBACK_DAYS,
  pageSize: DEFAULT_QIDO_PAGE_SIZE,
  maxPages: DEFAULT_QIDO_MAX_PAGES,
  backoff: DEFAULT_QIDO_BACKOFF,
  maxRetrieveAttempts: DEFAULT_MAX_RETRIEVE_ATTEMPTS,
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
  /**
   * WADO-RS transfer-syntax asked for first; unset (the default) = the original (`*`), negotiated
   * down the ladder of transfer-syntax-negotiation.ts.
   */
  readonly transferSyntax?: string | undefined;
  /** Failed retrieve attempts of one study before it is given up. */
  readonly maxRetrieveAttempts?: number | undefined;
  /**
   * What is held of each study: with it, retrieved studies whose instance count changed are checked
   * for late series / instances; without it, a retrieved study is never looked at again.
   */
  readonly held?: HeldStudyView | undefined;
  /** Delay before the next retrieve attempt of a failed study; defaults to `backoff`. */
  readonly retrieveBackoff?: BackoffOptions | undefined;
  /** Audit hooks (the lead wires them to the audit table); their errors are logged, never fatal. */
  readonly onQuery?:
    | ((node: string, query: Readonly<Record<string, string>>, resultCount: number) => Promise<void> | void)
    | undefined;
  /** A QIDO-RS search that failed (audited as remote-query with outcome 8). */
  readonly onQueryFailed?:
    | ((node: string, query: Readonly<Record<string, string>>, code: ErrorCodeT) => Promise<void> | void)
    | undefined;
  /**
   * The end of one retrieve attempt. Unlike the query hooks it runs inside the tracker's update
   * transaction (`q`, undefined from a tracker without a database): the remote-retrieve audit event
   * commits with the state change it records, and if it fails that change is rolled back and the
   * poll fails (the study is retried), instead of a change without its event (issue 12).
   */
  readonly onRetrieve?:
    | ((node: string, studyInstanceUid: string, report: RetrieveReport, q?: Queryable) => Promise<void> | void)
    | undefined;
  readonly logger?: Logger | undefined;
  /** Clock, for tests of the StudyDate window. */
  readonly now?: (() => Date) | undefined;
}

export interface PollSummary {
  readonly studiesFound: number;
  readonly studiesRetrieved: number;
  readonly studiesFailed: number;
  /** Listed but not attempted in this poll: failed and still backing off, or given up. */
  readonly studiesDeferred: number;
  readonly studiesGivenUp: number;
  /** Studies retrieved before whose late series / instances this poll retrieved. */
  readonly studiesUpdated: number;
  readonly instances: RetrieveCounts;
}

/** DICOM DA (PS3.5 Table 6.2-1), UTC. */
function toDA(d: Date): string {
  return d.toISOString().slice(0, 10).replace(/-/g, '');
}

export class QidoPoller {
  private readonly o: Required<
    Pick<
      QidoPollerOptions,
      'intervalMs' | 'lookbackDays' | 'pageSize' | 'maxPages' | 'backoff' | 'maxRetrieveAttempts' | 'retrieveBackoff'
    >
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
      maxRetrieveAttempts: options.maxRetrieveAttempts ?? QIDO_POLLER_DEFAULTS.maxRetrieveAttempts,
      retrieveBackoff: options.retrieveBackoff ?? options.backoff ?? QIDO_POLLER_DEFAULTS.backoff,
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
    const studies: Array<{ uid: string; count: number | null }> = [];
    const seen = new Set<string>();
    try {
      for (let page = 0; page < this.o.maxPages; page++) {
        const results = await node.client.searchForStudies(query, {
          limit: this.o.pageSize,
          offset: page * this.o.pageSize,
          // The instance count lets a given-up study be retried once the PACS holds more of it.
          includefield: [Tag.StudyInstanceUID, Tag.NumberOfStudyRelatedInstances],
        });
        let fresh = 0;
        for (const ds of results) {
          const uid = getString(ds, Tag.StudyInstanceUID);
          if (!isValidUid(uid) || seen.has(uid)) continue;
          seen.add(uid);
          const n = getNumber(ds, Tag.NumberOfStudyRelatedInstances);
          studies.push({ uid, count: n !== undefined && Number.isInteger(n) && n >= 0 ? n : null });
          fresh++;
        }
        // A short page is the last one; a page with nothing new means the server ignores offset.
        // Orthanc 1.10 applies limit/offset before filtering on ModalitiesInStudy, so with such a
        // filter a page can come back short early: give those nodes a pageSize above one poll's yield.
        if (results.length < this.o.pageSize || fresh === 0) break;
      }
    } catch (err: unknown) {
      await this.hook(() => this.o.onQueryFailed?.(node.name, query, errorCodeOf(err)));
      throw err;
    }
    await this.hook(() => this.o.onQuery?.(node.name, query, studies.length));
    this.log.info('QIDO search done', { studies: studies.length });

    let studiesRetrieved = 0;
    let studiesFailed = 0;
    let studiesDeferred = 0;
    let studiesGivenUp = 0;
    let studiesUpdated = 0;
    const total = { stored: 0, duplicate: 0, failed: 0 };
    const maxAttempts = this.o.maxRetrieveAttempts;
    for (const { uid: studyUid, count } of studies) {
      const gate = await this.o.tracker.observe(node.name, studyUid, count);
      // Late series (issue 11): a retrieved study is compared with the PACS when its instance count
      // changed since (or the PACS does not report one), and only what is missing is retrieved.
      let only: RetrieveScope[] | undefined;
      let expected = count;
      if (gate.decision === RetrieveDecision.Retrieved) {
        const held = this.o.held;
        if (!held || (count !== null && gate.knownInstanceCount === count)) continue;
        const missing = await this.missingOf(studyUid, held);
        if (missing.scopes.length === 0) {
          await this.o.tracker.markChecked(node.name, studyUid, count);
          continue;
        }
        only = missing.scopes;
        expected = missing.instances;
        this.log.info('retrieved study has late series or instances; retrieving only those', {
          studyInstanceUid: studyUid,
          series: missing.scopes.map((m) => m.seriesInstanceUid),
          listedInstances: missing.instances,
        });
      } else if (gate.decision !== RetrieveDecision.Attempt) {
        studiesDeferred++;
        continue;
      }
      if (gate.reopened)
        this.log.info('remote study changed since it was given up; retrieving again', { studyInstanceUid: studyUid });
      // Before anything is retrieved (issue 9): with the storage below its watermark or reserve the
      // poll stops here with storage-full, backs off, and the study stays unretrieved (not failed:
      // the study is not at fault, so it does not use up a retry).
      await this.o.sink.admit?.(0, {
        via: ReceivedVia.WadoRs,
        actor: node.name,
        remoteAddress: node.client.host,
        expectedStudyInstanceUid: studyUid,
      });
      const r = await retrieveStudyNegotiated({
        client: node.client,
        studyInstanceUid: studyUid,
        configuredTransferSyntax: this.o.transferSyntax,
        tmpDir: this.o.tmpDir,
        expectedInstances: expected,
        ...(only ? { only } : {}),
        log: this.log,
        accept: (file) =>
          this.o.sink.accept(file, {
            via: ReceivedVia.WadoRs,
            actor: node.name,
            remoteAddress: node.client.host,
          }),
      });
      total.stored += r.stored;
      total.duplicate += r.duplicate;
      total.failed += r.failed;
      const counts = { stored: r.stored, duplicate: r.duplicate, failed: r.failed };
      const common = {
        ...counts,
        maxAttempts,
        failedInstances: r.failedInstances,
        transcodedInstances: r.transcodedInstances,
        requests: r.requests,
        reopened: gate.reopened,
      };
      const onRetrieve = this.o.onRetrieve;
      if (r.failure) {
        studiesFailed++;
        const failure = r.failure;
        const failureReport = (rec: FailureRecorded): RetrieveReport => ({
          ...common,
          outcome: rec.state === 'given-up' ? RetrieveOutcome.GivenUp : RetrieveOutcome.Retrying,
          attempt: rec.attempts,
          errorCode: failure.code,
          nextAttemptAt: rec.nextAttemptAt,
        });
        const rec = await this.o.tracker.markFailed(
          node.name,
          studyUid,
          failure.code,
          failure.message,
          { failedInstances: r.failedInstances, remoteInstanceCount: count },
          { maxAttempts, backoff: this.o.retrieveBackoff },
          onRetrieve
            ? async (q, recorded) => {
                await onRetrieve(node.name, studyUid, failureReport(recorded), q);
              }
            : undefined,
        );
        const givenUp = rec.state === 'given-up';
        if (givenUp) studiesGivenUp++;
        this.log.log(
          givenUp ? 'error' : 'warn',
          givenUp ? 'WADO-RS study retrieve given up' : 'WADO-RS study retrieve failed',
          {
            studyInstanceUid: studyUid,
            code: r.failure.code,
            attempt: rec.attempts,
            maxAttempts,
            ...counts,
          },
        );
      } else {
        if (only) studiesUpdated++;
        else studiesRetrieved++;
        const report: RetrieveReport = {
          ...common,
          outcome: RetrieveOutcome.Retrieved,
          attempt: only ? gate.attempt + 1 : gate.attempt,
          ...(only ? { lateSeries: only.map((m) => m.seriesInstanceUid) } : {}),
        };
        await this.o.tracker.markRetrieved(
          node.name,
          studyUid,
          count,
          onRetrieve
            ? async (q) => {
                await onRetrieve(node.name, studyUid, report, q);
              }
            : undefined,
        );
        this.log.info(only ? 'WADO-RS late series retrieved' : 'WADO-RS study retrieved', {
          studyInstanceUid: studyUid,
          ...counts,
        });
      }
    }
    return {
      studiesFound: studies.length,
      studiesRetrieved,
      studiesFailed,
      studiesDeferred,
      studiesGivenUp,
      studiesUpdated,
      instances: total,
    };
  }

  /**
   * Series and instances the PACS lists for a retrieved study that were never stored here: a series
   * we hold nothing of is retrieved whole; a series whose NumberOfSeriesRelatedInstances (0020,1209)
   * exceeds what we hold (or is not reported) is listed instance by instance (QIDO-RS, PS3.18 §10.6)
   * and only the unknown SOP Instance UIDs are asked for. Our own exported series are skipped: the
   * draft we sent to this PACS is not new input. `instances` counts what the PACS lists as missing
   * (for a series whose count is not reported: 0, so an empty answer is not taken for a failure).
   */
  private async missingOf(
    studyUid: string,
    held: HeldStudyView,
  ): Promise<{ scopes: RetrieveScope[]; instances: number }> {
    const client = this.o.node.client;
    const [listed, have, own] = await Promise.all([
      client.searchForSeries(
        studyUid,
        {},
        { includefield: [Tag.SeriesInstanceUID, Tag.NumberOfSeriesRelatedInstances] },
      ),
      held.heldInstancesBySeries(studyUid),
      held.exportedSeriesOf(studyUid),
    ]);
    const scopes: RetrieveScope[] = [];
    let instances = 0;
    for (const ds of listed) {
      const seriesUid = getString(ds, Tag.SeriesInstanceUID);
      if (!isValidUid(seriesUid) || own.has(seriesUid)) continue;
      const n = getNumber(ds, Tag.NumberOfSeriesRelatedInstances);
      const remote = n !== undefined && Number.isInteger(n) && n >= 0 ? n : null;
      const mine = have.get(seriesUid);
      if (!mine || mine.size === 0) {
        if (remote === 0) continue;
        scopes.push({ seriesInstanceUid: seriesUid });
        instances += remote ?? 0;
        continue;
      }
      if (remote !== null && remote <= mine.size) continue;
      const sops = (await client.searchForInstances(studyUid, seriesUid, {}, { includefield: [Tag.SOPInstanceUID] }))
        .map((d) => getString(d, Tag.SOPInstanceUID))
        .filter((sop): sop is string => isValidUid(sop) && !mine.has(sop));
      const unique = [...new Set(sops)];
      if (unique.length === 0) continue;
      scopes.push({ seriesInstanceUid: seriesUid, sopInstanceUids: unique });
      instances += unique.length;
    }
    return { scopes, instances };
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
