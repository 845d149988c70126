import { isValidUid } from '../dicom/dataset.js';
import { cFind, type FindResult, SERIES_RETURN_KEYS, STUDY_RETURN_KEYS } from '../dimse/find-scu.js';
import { type Identifier, integerOf } from '../dimse/identifier.js';
import { cMove, type MoveResult } from '../dimse/move-scu.js';
import {
  type QrAssociation,
  type QrPeer,
  QrSopClass,
  QueryLevel,
  withQrAssociation,
} from '../dimse/query-retrieve-scu.js';
import { QrOutcome } from '../dimse/query-retrieve-status.js';
import type { ErrorCode as ErrorCodeT } from '../errors.js';
import { ErrorCode, errorCodeOf, normalizeErrorString } from '../errors.js';
import { type RemoteStudyTracker, RetrieveDecision } from '../ingest/remote-study-tracker.js';
import type { InstanceSink } from '../ingest/types.js';
import { ReceivedVia } from '../ingest/types.js';
import type { Logger } from '../logger.js';
import { childLogger } from '../logger.js';
import { PollSchedule } from './poll-schedule.js';
import type { BackoffOptions, HeldStudyView, QidoPollerOptions, RetrieveReport } from './qido-poller.js';
import { RetrieveOutcome } from './qido-poller.js';

/**
 * Pull ingest from a PACS without DICOMweb (issue 11): C-FIND at STUDY level for the studies of the
 * lookback window (StudyDate range, then StudyTime checked here; ModalitiesInStudy as a value list),
 * then C-MOVE of each study not yet retrieved to our own listening AE title. The instances arrive
 * through the Storage SCP (storage-scp.ts), which answers each C-STORE only once it is durable, so
 * the final C-MOVE-RSP means they are stored. The same tracker as the QIDO-RS poller
 * (remote_studies, keyed by node name) keeps a study from being retrieved twice; a retrieved study
 * the PACS now lists with another NumberOfStudyRelatedInstances is compared series by series
 * (C-FIND SERIES, NumberOfSeriesRelatedInstances against what is held) and only the series with
 * something missing are moved (SERIES level). Queries and retrieves are audited by the same hooks
 * as the QIDO path (remote-query DCM 110112, remote-retrieve DCM 110104). A self-rescheduling loop
 * like qido-poller.ts: polls never overlap; failed polls back off.
 */

export interface DimseQrNode {
  readonly name: string;
  readonly peer: QrPeer;
  /** Our AE title the PACS sends to (one of dimse.listeners). */
  readonly moveDestination: string;
}

export interface DimsePollerOptions
  extends Pick<QidoPollerOptions, 'onQuery' | 'onQueryFailed' | 'onRetrieve' | 'logger' | 'now'> {
  readonly node: DimseQrNode;
  readonly sink: InstanceSink;
  readonly tracker: RemoteStudyTracker;
  readonly held?: HeldStudyView | undefined;
  readonly intervalMs: number;
  readonly lookbackMinutes: number;
  readonly modalities: readonly string[];
  readonly maxResults: number;
  readonly findTimeLimitMs: number;
  readonly backoff: BackoffOptions;
  readonly maxRetrieveAttempts: number;
}

export interface DimsePollSummary {
  readonly studiesFound: number;
  readonly studiesRetrieved: number;
  readonly studiesUpdated: number;
  readonly studiesFailed: number;
  readonly studiesDeferred: number;
  /** The C-FIND was cancelled at maxResults or findTimeLimitMs: the PACS may list more. */
  readonly incomplete: boolean;
  readonly instancesCompleted: number;
}

/** DICOM DA and TM (PS3.5 Table 6.2-1), UTC. */
const toDA = (d: Date): string => d.toISOString().slice(0, 10).replace(/-/g, '');

/** StudyDate + StudyTime as a comparable YYYYMMDDHHMMSS; time defaults to 000000 (PS3.5 TM may be truncated). */
function stamp(date: string | undefined, time: string | undefined): string | undefined {
  if (!date || !/^\d{8}$/.test(date)) return undefined;
  const t = (time ?? '').replace(/:/g, '').split('.')[0] ?? '';
  return date + (/^\d{0,6}$/.test(t) ? t.padEnd(6, '0') : '000000');
}

export class DimsePoller {
  private readonly log: Logger;
  private readonly loop: PollSchedule;

  constructor(private readonly o: DimsePollerOptions) {
    this.log = o.logger ?? childLogger('dimse-poller', { node: o.node.name });
    this.loop = new PollSchedule(() => this.pollOnce(), {
      intervalMs: o.intervalMs,
      backoff: o.backoff,
      log: this.log,
      failedMessage: 'C-FIND poll failed',
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

  /** The STUDY-level matching keys of this poll (no PHI: dates and modalities only). */
  private matchKeys(now: Date): { keys: Identifier; from: string } {
    const fromDate = new Date(now.getTime() - this.o.lookbackMinutes * 60_000);
    // Range matching on StudyDate (PS3.4 C.2.2.2.5); the time of day is checked on the answers,
    // since a combined date-time range is not something every SCP supports.
    const keys: Identifier = { StudyDate: `${toDA(fromDate)}-${toDA(now)}` };
    if (this.o.modalities.length > 0) keys.ModalitiesInStudy = this.o.modalities.join('\\');
    return { keys, from: fromDate.toISOString().replace(/[-:T]/g, '').slice(0, 14) };
  }

  /** One poll: C-FIND, then C-MOVE of what is new or has grown. Throws only when the C-FIND itself fails. */
  async pollOnce(): Promise<DimsePollSummary> {
    const { node } = this.o;
    const now = this.o.now?.() ?? new Date();
    const { keys, from } = this.matchKeys(now);
    const audited: Record<string, string> = {
      QueryRetrieveLevel: QueryLevel.Study,
      ...(keys as Record<string, string>),
    };
    let found: FindResult;
    try {
      found = await withQrAssociation(node.peer, [QrSopClass.StudyRootFind], (a) =>
        cFind(a, {
          level: QueryLevel.Study,
          keys: { ...STUDY_RETURN_KEYS, ...keys },
          limit: this.o.maxResults,
          timeLimitMs: this.o.findTimeLimitMs,
        }),
      );
    } catch (err: unknown) {
      await this.hook(() => this.o.onQueryFailed?.(node.name, audited, errorCodeOf(err)));
      throw err;
    }
    const wanted = new Set(this.o.modalities);
    const studies: Array<{ uid: string; count: number | null }> = [];
    const seen = new Set<string>();
    for (const m of found.matches) {
      const uid = m.StudyInstanceUID;
      if (!isValidUid(uid) || seen.has(uid)) continue;
      const at = stamp(m.StudyDate, m.StudyTime);
      if (at !== undefined && at < from) continue;
      // An SCP that ignores value-list matching returns every modality: filter here too.
      const mods = (m.ModalitiesInStudy ?? '').split('\\').filter((x) => x !== '');
      if (wanted.size > 0 && mods.length > 0 && !mods.some((x) => wanted.has(x))) continue;
      seen.add(uid);
      studies.push({ uid, count: integerOf(m.NumberOfStudyRelatedInstances) });
    }
    await this.hook(() => this.o.onQuery?.(node.name, audited, studies.length));
    if (found.incomplete)
      this.log.warn('C-FIND cancelled before the PACS finished: more studies may match', {
        reason: found.incomplete,
        kept: found.matches.length,
      });
    this.log.info('C-FIND search done', { studies: studies.length });

    let studiesRetrieved = 0;
    let studiesUpdated = 0;
    let studiesFailed = 0;
    let studiesDeferred = 0;
    let instancesCompleted = 0;
    for (const { uid, count } of studies) {
      const gate = await this.o.tracker.observe(node.name, uid, count);
      let series: string[] | undefined;
      if (gate.decision === RetrieveDecision.Retrieved) {
        const held = this.o.held;
        if (!held || (count !== null && gate.knownInstanceCount === count)) continue;
        let missing: string[];
        try {
          missing = await this.missingSeriesOf(uid, held);
        } catch (err: unknown) {
          this.log.warn('C-FIND SERIES of a retrieved study failed; compared again at the next poll', {
            studyInstanceUid: uid,
            code: errorCodeOf(err),
          });
          continue;
        }
        if (missing.length === 0) {
          await this.o.tracker.markChecked(node.name, uid, count);
          continue;
        }
        series = missing;
      } else if (gate.decision !== RetrieveDecision.Attempt) {
        studiesDeferred++;
        continue;
      }
      // Storage below its watermark: the poll stops (storage-full), the study stays unretrieved.
      await this.o.sink.admit?.(0, {
        via: ReceivedVia.CStore,
        actor: node.name,
        remoteAddress: node.peer.host,
        expectedStudyInstanceUid: uid,
      });
      let result: MoveResult | undefined;
      let failure: { code: ErrorCodeT; message: string } | undefined;
      try {
        result = await withQrAssociation(node.peer, [QrSopClass.StudyRootMove], (a: QrAssociation) =>
          cMove(a, {
            studyInstanceUid: uid,
            moveDestination: node.moveDestination,
            ...(series ? { seriesInstanceUids: series } : {}),
          }),
        );
        if (result.failed > 0 || result.outcome === QrOutcome.Cancelled)
          failure = {
            code: ErrorCode.PacsUnavailable,
            message: `C-MOVE: ${result.failed} of ${result.completed + result.failed + result.warning} sub-operations failed`,
          };
      } catch (err: unknown) {
        failure = { code: errorCodeOf(err), message: normalizeErrorString(err) };
      }
      const completed = result?.completed ?? 0;
      instancesCompleted += completed;
      const common = {
        stored: completed + (result?.warning ?? 0),
        duplicate: 0,
        failed: result?.failed ?? 0,
        maxAttempts: this.o.maxRetrieveAttempts,
        failedInstances: result?.failedSopInstanceUids ?? [],
        transcodedInstances: [],
        requests: [],
        reopened: gate.reopened,
      };
      let report: RetrieveReport;
      if (failure) {
        studiesFailed++;
        const rec = await this.o.tracker.markFailed(
          node.name,
          uid,
          failure.code,
          failure.message,
          { failedInstances: common.failedInstances, remoteInstanceCount: count },
          { maxAttempts: this.o.maxRetrieveAttempts, backoff: this.o.backoff },
        );
        const givenUp = rec.state === 'given-up';
        report = {
          ...common,
          outcome: givenUp ? RetrieveOutcome.GivenUp : RetrieveOutcome.Retrying,
          attempt: rec.attempts,
          errorCode: failure.code,
          nextAttemptAt: rec.nextAttemptAt,
        };
        this.log.log(givenUp ? 'error' : 'warn', 'C-MOVE of a study failed', {
          studyInstanceUid: uid,
          code: failure.code,
          attempt: rec.attempts,
          completed,
          failed: common.failed,
        });
      } else {
        if (series) studiesUpdated++;
        else studiesRetrieved++;
        await this.o.tracker.markRetrieved(node.name, uid, count);
        report = {
          ...common,
          outcome: RetrieveOutcome.Retrieved,
          attempt: series ? gate.attempt + 1 : gate.attempt,
          ...(series ? { lateSeries: series } : {}),
        };
        this.log.info(series ? 'C-MOVE late series retrieved' : 'C-MOVE study retrieved', {
          studyInstanceUid: uid,
          completed,
        });
      }
      await this.hook(() => this.o.onRetrieve?.(node.name, uid, report));
    }
    return {
      studiesFound: studies.length,
      studiesRetrieved,
      studiesUpdated,
      studiesFailed,
      studiesDeferred,
      incomplete: found.incomplete !== undefined,
      instancesCompleted,
    };
  }

  /**
   * Series the PACS lists for a retrieved study that hold more instances than we do (or that we
   * hold nothing of), our own exported series excepted. A series whose count the PACS does not
   * report is moved only when we hold none of it (C-MOVE cannot ask for single instances at SERIES
   * level without an instance C-FIND; an identical resend would be harmless but wasteful).
   */
  private async missingSeriesOf(studyUid: string, held: HeldStudyView): Promise<string[]> {
    const [listed, have, own] = await Promise.all([
      withQrAssociation(this.o.node.peer, [QrSopClass.StudyRootFind], (a) =>
        cFind(a, {
          level: QueryLevel.Series,
          keys: { ...SERIES_RETURN_KEYS, StudyInstanceUID: studyUid },
          limit: this.o.maxResults,
          timeLimitMs: this.o.findTimeLimitMs,
        }),
      ),
      held.heldInstancesBySeries(studyUid),
      held.exportedSeriesOf(studyUid),
    ]);
    const out: string[] = [];
    for (const m of listed.matches) {
      const s = m.SeriesInstanceUID;
      if (!isValidUid(s) || own.has(s) || out.includes(s)) continue;
      const remote = integerOf(m.NumberOfSeriesRelatedInstances);
      const mine = have.get(s)?.size ?? 0;
      if (remote === 0) continue;
      if (mine === 0 || (remote !== null && remote > mine)) out.push(s);
    }
    return out;
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
