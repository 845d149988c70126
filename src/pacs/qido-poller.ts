import type { Queryable } from '../db/pool.js';
import { isValidUid } from '../dicom/dataset.js';
import type { ErrorCode as ErrorCodeT } from '../errors.js';
import { ErrorCode, errorCodeOf, normalizeErrorString } from '../errors.js';
import { type FailureRecorded, type RemoteStudyTracker, RetrieveDecision } from '../ingest/remote-study-tracker.js';
import type { InstanceSink } from '../ingest/types.js';
import { ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import { getNumber, getString, getStrings, Tag } from './dicom-json.js';
import type { DicomwebClient } from './dicomweb-client.js';
import { type BackoffOptions, PollSchedule } from './poll-schedule.js';
import type { QidoPollState } from './qido-poll-state.js';
import { dayPart, splitPart, type WindowPart, windowParts } from './qido-window.js';
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

export type { BackoffOptions } from './poll-schedule.js';

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

/**
 * The incremental window starts this long before the last poll's end. StudyDate/StudyTime is when
 * the study began at the modality, not when it reached the PACS: a study sent an hour after it
 * started is listed only by a window reaching back that far (or by the next full re-scan).
 */
export const DEFAULT_QIDO_OVERLAP_MS = 2 * 3_600_000;
/** The whole lookback is searched again this often: studies older than the window, late series of old studies. */
export const DEFAULT_QIDO_FULL_SCAN_INTERVAL_MS = 3_600_000;
/** Studies first seen this recently are asked for by UID at every poll (second halves, late series). */
export const DEFAULT_QIDO_WATCH_MS = 2 * 3_600_000;

export const QIDO_POLLER_DEFAULTS = {
  intervalMs: DEFAULT_QIDO_POLL_INTERVAL_MS,
  overlapMs: DEFAULT_QIDO_OVERLAP_MS,
  fullScanIntervalMs: DEFAULT_QIDO_FULL_SCAN_INTERVAL_MS,
  watchMs: DEFAULT_QIDO_WATCH_MS,
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
  /**
   * The high-water mark and watch list (PostgreSQL, migration 0025). Without it every poll searches
   * the whole lookback (the behaviour before issue 11's incremental window).
   */
  readonly state?: QidoPollState | undefined;
  readonly intervalMs?: number | undefined;
  readonly lookbackDays?: number | undefined;
  readonly overlapMs?: number | undefined;
  readonly fullScanIntervalMs?: number | undefined;
  readonly watchMs?: number | undefined;
  /** ModalitiesInStudy values of which a study must hold one (PS3.18 §8.3.4.1); empty = all. */
  readonly modalities?: readonly string[] | undefined;
  readonly modalityFilter?: ModalityFilter | undefined;
  /**
   * The PACS's maximum number of results per search, when known (Orthanc: LimitFindResults); 0 =
   * none. A search answered with this many is split into narrower StudyDate/StudyTime windows.
   */
  readonly maxResults?: number | undefined;
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
    | ((
        node: string,
        query: Readonly<Record<string, string>>,
        resultCount: number,
        info?: QueryInfo,
      ) => Promise<void> | void)
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
  /** Full when the whole lookback was searched; incremental: the window and the watch list. */
  readonly scan: typeof QidoScan.Full | typeof QidoScan.Incremental;
  /** QIDO-RS searches made (each with all its pages). */
  readonly queries: number;
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

/** Which search a query of a poll belongs to (audit detail `scan`). Closed set. */
export const QidoScan = {
  /** The whole lookback (StudyDate from now − lookbackDays): the first poll, then every fullScanIntervalMs. */
  Full: 'full',
  /** [mark − overlap, now] on StudyDate / StudyTime. */
  Incremental: 'incremental',
  /** The watch list by StudyInstanceUID (UID list matching), whatever its StudyDate. */
  Watch: 'watch',
} as const;
export type QidoScan = (typeof QidoScan)[keyof typeof QidoScan];

/** What the audit learns about one search (all its pages) besides the match keys and result count. */
export interface QueryInfo {
  readonly scan: QidoScan;
  readonly pages: number;
  /** The answer reached the node's maxResults, so it may be cut. */
  readonly atMaxResults?: boolean | undefined;
  /** …and its window was searched again in two halves. */
  readonly split?: boolean | undefined;
}

/** Where the ModalitiesInStudy filter is applied. Closed set. */
export const ModalityFilter = {
  /** Sent as the ModalitiesInStudy match key (PS3.18 §8.3.4.1) and checked again on the answer. */
  Server: 'server',
  /**
   * Not sent; checked on the ModalitiesInStudy returned (includefield). For a PACS that pages before
   * it filters (Orthanc 1.10 applies limit/offset before ModalitiesInStudy), where a filtered page
   * is short before the end and paging cannot tell.
   */
  Client: 'client',
} as const;
export type ModalityFilter = (typeof ModalityFilter)[keyof typeof ModalityFilter];

/**
 * Separator of a QIDO-RS value list (PS3.18 §8.3.4.1: UID list matching and multiple values are
 * comma-separated in the URL; Orthanc 1.10 matches nothing for a backslash-separated UID list).
 */
export const UID_LIST_SEPARATOR = ',';
/** StudyInstanceUIDs per watch query: keeps the URL near 4 KB at 64-character UIDs. */
export const WATCH_UIDS_PER_QUERY = 50;
/** The watch list's size at most, per poll. */
export const MAX_WATCHED_STUDIES = 1000;

export class QidoPoller {
  private readonly o: Required<
    Pick<
      QidoPollerOptions,
      | 'intervalMs'
      | 'lookbackDays'
      | 'pageSize'
      | 'maxPages'
      | 'backoff'
      | 'maxRetrieveAttempts'
      | 'retrieveBackoff'
      | 'overlapMs'
      | 'fullScanIntervalMs'
      | 'watchMs'
      | 'modalityFilter'
      | 'maxResults'
    >
  > &
    QidoPollerOptions;
  private readonly log: Logger;
  private readonly loop: PollSchedule;

  constructor(options: QidoPollerOptions) {
    this.o = {
      ...options,
      intervalMs: options.intervalMs ?? QIDO_POLLER_DEFAULTS.intervalMs,
      lookbackDays: options.lookbackDays ?? QIDO_POLLER_DEFAULTS.lookbackDays,
      overlapMs: options.overlapMs ?? QIDO_POLLER_DEFAULTS.overlapMs,
      fullScanIntervalMs: options.fullScanIntervalMs ?? QIDO_POLLER_DEFAULTS.fullScanIntervalMs,
      watchMs: options.watchMs ?? QIDO_POLLER_DEFAULTS.watchMs,
      modalityFilter: options.modalityFilter ?? ModalityFilter.Server,
      maxResults: options.maxResults ?? 0,
      pageSize: options.pageSize ?? QIDO_POLLER_DEFAULTS.pageSize,
      maxPages: options.maxPages ?? QIDO_POLLER_DEFAULTS.maxPages,
      backoff: options.backoff ?? QIDO_POLLER_DEFAULTS.backoff,
      maxRetrieveAttempts: options.maxRetrieveAttempts ?? QIDO_POLLER_DEFAULTS.maxRetrieveAttempts,
      retrieveBackoff: options.retrieveBackoff ?? options.backoff ?? QIDO_POLLER_DEFAULTS.backoff,
    };
    this.log = options.logger ?? childLogger('qido-poller', { node: options.node.name });
    this.loop = new PollSchedule(() => this.pollOnce(), {
      intervalMs: this.o.intervalMs,
      backoff: this.o.backoff,
      log: this.log,
      failedMessage: 'QIDO poll failed',
    });
  }

  get nodeName(): string {
    return this.o.node.name;
  }

  /** Start polling now and then every `intervalMs` (or the backoff delay after a failed poll). Idempotent. */
  start(): void {
    this.loop.start();
  }

  /** Stop scheduling and wait for an in-flight poll to finish. Idempotent. */
  stop(): Promise<void> {
    return this.loop.stop();
  }

  /**
   * One poll: plan the searches (the whole lookback, or the incremental window plus the watch list),
   * run each with all its pages, retrieve every new or changed study once however many searches
   * listed it, then move the high-water mark. Throws only when a search itself fails (the mark then
   * stays, so the next poll searches the same window again).
   */
  async pollOnce(): Promise<PollSummary> {
    const { node } = this.o;
    const now = this.o.now?.() ?? new Date();
    const mark = this.o.state ? await this.o.state.mark(node.name) : null;
    const full = !this.o.state || !mark || now.getTime() - mark.lastFullScanAt.getTime() >= this.o.fullScanIntervalMs;
    const base: Record<string, string> = { ...node.query };
    const modalities = this.o.modalities ?? [];
    // List matching on a multi-valued CS (PS3.4 C.2.2.2.2): any of the values.
    if (modalities.length > 0 && this.o.modalityFilter === ModalityFilter.Server)
      base.ModalitiesInStudy = modalities.join(UID_LIST_SEPARATOR);
    // A planned search; `part`: the StudyDate/StudyTime window part it covers, split when the
    // answer reaches the node's maximum number of results.
    type Planned = { scan: QidoScan; query: Record<string, string>; part?: WindowPart };
    const ofPart = (scan: QidoScan, part: WindowPart): Planned => ({ scan, query: { ...base, ...part.keys }, part });
    const planned: Planned[] = [];
    if (full || !mark) {
      if (Number.isFinite(this.o.lookbackDays)) {
        // Range matching on StudyDate (PS3.4 C.2.2.2.5), whole days. Studies without a StudyDate do
        // not match a range; such a node needs lookbackDays = Infinity plus its own filters.
        planned.push(ofPart(QidoScan.Full, dayPart(new Date(now.getTime() - this.o.lookbackDays * 86_400_000), now)));
      } else planned.push({ scan: QidoScan.Full, query: { ...base } });
    } else {
      const from = new Date(mark.windowEnd.getTime() - this.o.overlapMs);
      for (const part of windowParts(from, now)) planned.push(ofPart(QidoScan.Incremental, part));
      let watched = await (this.o.state as QidoPollState).watched(node.name, this.o.watchMs, MAX_WATCHED_STUDIES);
      // A node restricted to given studies keeps that restriction.
      const only = node.query?.StudyInstanceUID?.split(UID_LIST_SEPARATOR);
      if (only) watched = watched.filter((u) => only.includes(u));
      for (let i = 0; i < watched.length; i += WATCH_UIDS_PER_QUERY) {
        const uids = watched.slice(i, i + WATCH_UIDS_PER_QUERY).join(UID_LIST_SEPARATOR);
        planned.push({ scan: QidoScan.Watch, query: { ...base, StudyInstanceUID: uids } });
      }
    }
    const studies: Array<{ uid: string; count: number | null }> = [];
    const seen = new Set<string>();
    let queries = 0;
    for (let next = planned.shift(); next; next = planned.shift()) {
      const { scan, query, part } = next;
      let found: Array<{ uid: string; count: number | null }>;
      let info: QueryInfo;
      queries++;
      try {
        ({ found, info } = await this.search(scan, query));
      } catch (err: unknown) {
        await this.hook(() => this.o.onQueryFailed?.(node.name, query, errorCodeOf(err)));
        throw err;
      }
      // The PACS answers at most maxResults (Orthanc's LimitFindResults; offset does not reach past
      // it): an answer that long may be cut, so its window is searched again in two halves.
      const atCap = this.o.maxResults > 0 && found.length >= this.o.maxResults;
      const halves = atCap && part ? splitPart(part) : null;
      if (atCap) info = { ...info, atMaxResults: true, ...(halves ? { split: true } : {}) };
      await this.hook(() => this.o.onQuery?.(node.name, query, found.length, info));
      if (halves) {
        planned.unshift(...halves.map((h) => ofPart(scan, h)));
      } else if (atCap) {
        this.log.warn('QIDO answer at the node maximum and its window cannot be narrowed: studies may be missed', {
          scan,
          maxResults: this.o.maxResults,
        });
      }
      // De-duplication: overlapping windows, split halves and the watch list list a study more than
      // once; the tracker then decides whether it is new, changed (late series) or already held.
      for (const f of found) {
        if (seen.has(f.uid)) continue;
        seen.add(f.uid);
        studies.push(f);
      }
    }
    this.log.info('QIDO search done', {
      scan: full ? 'full' : 'incremental',
      queries,
      studies: studies.length,
    });

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
    // Retrieve failures do not hold the mark back: the tracker keeps those studies and the watch list
    // asks for them again by UID.
    await this.o.state?.saveMark(node.name, now, full ? now : null);
    return {
      scan: full ? QidoScan.Full : QidoScan.Incremental,
      queries,
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
   * One search with all its pages (PS3.18 §8.3.4.4 limit/offset), until a page comes back short. The
   * offset moves by what a page returned, not by `limit`. A PACS's own maximum per search is not
   * visible in the pages (Orthanc answers at most LimitFindResults + 1 and offset does not reach past
   * them): that is `maxResults`, handled by the caller by splitting the window. A page with nothing
   * new means the server ignores offset; maxPages stops a server that pages forever.
   */
  private async search(
    scan: QidoScan,
    query: Readonly<Record<string, string>>,
  ): Promise<{ found: Array<{ uid: string; count: number | null }>; info: QueryInfo }> {
    const found: Array<{ uid: string; count: number | null }> = [];
    const seen = new Set<string>();
    const modalities = this.o.modalities ?? [];
    const includefield: string[] = [Tag.StudyInstanceUID, Tag.NumberOfStudyRelatedInstances];
    if (modalities.length > 0) includefield.push(Tag.ModalitiesInStudy);
    let offset = 0;
    let pages = 0;
    while (pages < this.o.maxPages) {
      const results = await this.o.node.client.searchForStudies(query, {
        limit: this.o.pageSize,
        offset,
        // The instance count lets a given-up study be retried once the PACS holds more of it.
        includefield,
      });
      pages++;
      let fresh = 0;
      for (const ds of results) {
        const uid = getString(ds, Tag.StudyInstanceUID);
        if (!isValidUid(uid) || seen.has(uid)) continue;
        seen.add(uid);
        fresh++;
        if (modalities.length > 0) {
          // Checked on the answer too: a PACS may ignore the key, and with `client` it is not sent.
          const has = getStrings(ds, Tag.ModalitiesInStudy);
          if (has.length > 0 && !has.some((m) => modalities.includes(m))) continue;
        }
        const n = getNumber(ds, Tag.NumberOfStudyRelatedInstances);
        found.push({ uid, count: n !== undefined && Number.isInteger(n) && n >= 0 ? n : null });
      }
      // A short page is the last one; a page with nothing new means the server ignores offset.
      // Orthanc 1.10 applies limit/offset before filtering on ModalitiesInStudy, so with that key a
      // page can come back short early: such a node uses modalityFilter: client.
      if (results.length < this.o.pageSize || fresh === 0) break;
      offset += results.length;
    }
    return { found, info: { scan, pages } };
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
