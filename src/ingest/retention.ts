import { rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type pg from 'pg';
import { AuditEventKind } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { withTransaction } from '../db/pool.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import {
  type InstanceSource,
  type LiveInstanceFile,
  listLiveInstances,
  lockLiveInstances,
  markInstancesDeleted,
  studySources,
} from './instance-repository.js';
import { listRetentionCandidates, lockStudy, type Study, StudyState, studyExpunged } from './study-lifecycle.js';
import { ReceivedVia } from './types.js';

/**
 * Retention of received instances (issue 9). A received study is kept until its draft went out: only
 * studies in state 'exported' (and, where a rule says so, 'failed' ones) are ever removed, and only
 * when every live instance of the study came from a source a rule names (calling AE title, remote
 * node, STOW-RS user), once the rule's age has passed. Removing a study deletes its instances' files,
 * marks their rows deleted (kept: digest and provenance stay answerable), moves the study to
 * 'expunged' and records a 'study-deleted' audit event (110105, action D, PS3.15 A.5.3.6) with the
 * UIDs and counts — all in one transaction, so the audit trail is never missing a deletion that
 * happened. Jobs, SR exports, the SRs we produced and the audit trail itself are never touched.
 */

const DAY_MS = 86_400_000;

/** A retention rule (config `retention.rules[]`): which source, and how long after which outcome. */
export interface RetentionRule {
  /** Shown in the dry run, the log and the audit event. */
  readonly name: string;
  /** How the study's instances arrived (instances.received_via). */
  readonly via: ReceivedVia;
  /** via c-store: only instances from these calling AE titles (PS3.8 A-ASSOCIATE-RQ). Absent: any. */
  readonly callingAeTitles?: readonly string[];
  /** via wado-rs: only instances the QIDO poller retrieved from these remote nodes. Absent: any. */
  readonly remoteNodes?: readonly string[];
  /** via stow-rs: only instances these authenticated HTTP users sent. Absent: any sender. */
  readonly users?: readonly string[];
  /** Remove an exported study this many days after its draft went out. */
  readonly exportedAfterDays: number;
  /** Also remove a failed study this many days after it failed. Absent: failed studies are kept. */
  readonly failedAfterDays?: number;
}

export const DEFAULT_RETENTION_INTERVAL_MS = 3_600_000;
/** Studies read per page, and at most per run (a run is bounded; the next one continues). */
export const DEFAULT_RETENTION_PAGE_SIZE = 200;
export const DEFAULT_RETENTION_MAX_STUDIES_PER_RUN = 10_000;

/** Why a completed study was kept. Closed set. */
export const KeepReason = {
  /** No rule names every source the study's instances came from. */
  NoMatchingRule: 'no-matching-rule',
  /** The matching rule's age has not passed yet. */
  NotOldEnough: 'not-old-enough',
  /** The study failed and the matching rule keeps failed studies. */
  FailedKept: 'failed-kept',
  /** A stored file lies outside the instance store: retention deletes only what the store wrote. */
  OutsideStorage: 'file-outside-storage',
  /** Between the scan and the deletion the study changed (a new instance, a re-run). */
  Changed: 'changed',
  /** Removing a file failed (permissions, I/O); the study stays as it was and is retried next run. */
  DeleteFailed: 'delete-failed',
} as const;
export type KeepReason = (typeof KeepReason)[keyof typeof KeepReason];

/** The list a rule restricts its source to, or undefined when it takes any sender of its kind. */
function actorsOf(rule: RetentionRule): readonly string[] | undefined {
  switch (rule.via) {
    case ReceivedVia.CStore:
      return rule.callingAeTitles;
    case ReceivedVia.WadoRs:
      return rule.remoteNodes;
    case ReceivedVia.StowRs:
      return rule.users;
    default:
      return undefined;
  }
}

/**
 * Whether `source` is one the rule names. AE titles compare without leading/trailing spaces, which
 * are not significant (PS3.5 Table 6.2-1, AE).
 */
export function ruleMatchesSource(rule: RetentionRule, source: InstanceSource): boolean {
  if (source.via !== rule.via) return false;
  const actors = actorsOf(rule);
  if (actors === undefined) return true;
  if (source.actor === null) return false;
  const norm = (s: string) => (rule.via === ReceivedVia.CStore ? s.trim() : s);
  const actor = norm(source.actor);
  return actors.some((a) => norm(a) === actor);
}

/**
 * The first rule (in configuration order) that names every source of the study; undefined when none
 * does, or the study has no live instance. A study with instances from a source no rule names is
 * kept whole: retention never removes what an operator did not ask to remove.
 */
export function ruleForStudy(
  rules: readonly RetentionRule[],
  sources: readonly InstanceSource[],
): RetentionRule | undefined {
  if (sources.length === 0) return undefined;
  return rules.find((r) => sources.every((s) => ruleMatchesSource(r, s)));
}

/** How long after entering `state` the rule removes a study; undefined: never. */
export function retentionAgeMs(rule: RetentionRule, state: StudyState): number | undefined {
  if (state === StudyState.Exported) return rule.exportedAfterDays * DAY_MS;
  if (state === StudyState.Failed && rule.failedAfterDays !== undefined) return rule.failedAfterDays * DAY_MS;
  return undefined;
}

/** One study retention removed (or, in a dry run, would remove). */
export interface RemovedStudy {
  readonly studyInstanceUid: string;
  readonly rule: string;
  /** The state it was removed from (exported or failed) and since when. */
  readonly state: StudyState;
  readonly since: Date;
  readonly instances: number;
  readonly bytes: number;
}

export interface KeptStudy {
  readonly studyInstanceUid: string;
  readonly state: StudyState;
  readonly reason: KeepReason;
  readonly rule?: string;
}

export interface RetentionReport {
  readonly dryRun: boolean;
  readonly removed: readonly RemovedStudy[];
  readonly kept: readonly KeptStudy[];
  /** True when the run stopped at maxStudies; the next run continues. */
  readonly truncated: boolean;
}

export interface RetentionOptions {
  readonly pool: pg.Pool;
  readonly rules: readonly RetentionRule[];
  /** Root of the instance store: only files under it are deleted. */
  readonly storageDir: string;
  /** Report what would be removed; change nothing. */
  readonly dryRun?: boolean;
  /** Audit actor of the deletions (default 'radscribe'; the CLI passes the operator). */
  readonly actor?: string;
  readonly pageSize?: number;
  readonly maxStudies?: number;
  readonly logger?: Logger;
  /** Clock for the age test (default Date.now; the database clock chose the candidates). */
  readonly now?: () => number;
}

function isInside(root: string, file: string): boolean {
  const rel = path.relative(root, path.resolve(file));
  return rel !== '' && !rel.startsWith('..') && !path.isAbsolute(rel);
}

/** One retention pass over the completed studies. */
export async function runRetention(options: RetentionOptions): Promise<RetentionReport> {
  const log = options.logger ?? childLogger('retention');
  const dryRun = options.dryRun ?? false;
  const pageSize = options.pageSize ?? DEFAULT_RETENTION_PAGE_SIZE;
  const maxStudies = options.maxStudies ?? DEFAULT_RETENTION_MAX_STUDIES_PER_RUN;
  const now = options.now ?? Date.now;
  const storageDir = path.resolve(options.storageDir);
  const removed: RemovedStudy[] = [];
  const kept: KeptStudy[] = [];
  if (options.rules.length === 0) return { dryRun, removed, kept, truncated: false };

  // The youngest age any rule acts at narrows the scan; each study is then judged by its own rule.
  const ages = options.rules.flatMap((r) => [
    r.exportedAfterDays * DAY_MS,
    ...(r.failedAfterDays === undefined ? [] : [r.failedAfterDays * DAY_MS]),
  ]);
  const states: StudyState[] = options.rules.some((r) => r.failedAfterDays !== undefined)
    ? [StudyState.Exported, StudyState.Failed]
    : [StudyState.Exported];
  const minAgeMs = Math.min(...ages);

  let after = '';
  let seen = 0;
  let truncated = false;
  for (;;) {
    const page = await listRetentionCandidates(options.pool, states, minAgeMs, pageSize, after);
    for (const study of page) {
      if (seen >= maxStudies) {
        truncated = true;
        break;
      }
      seen++;
      after = study.studyInstanceUid;
      const verdict = await judge(options.pool, options.rules, study, now());
      if ('reason' in verdict) {
        kept.push(verdict);
        continue;
      }
      if (dryRun) {
        // The same checks as a real run, without locks or changes.
        const files = await listLiveInstances(options.pool, study.studyInstanceUid);
        if (files.some((f) => !isInside(storageDir, f.filePath)))
          kept.push({
            studyInstanceUid: verdict.studyInstanceUid,
            state: verdict.state,
            rule: verdict.rule,
            reason: KeepReason.OutsideStorage,
          });
        else removed.push({ ...verdict, ...footprint(files) });
        continue;
      }
      const outcome = await expungeStudy(options.pool, study, verdict.rule, options, storageDir, log);
      if ('reason' in outcome) kept.push(outcome);
      else removed.push(outcome);
    }
    if (truncated || page.length < pageSize) break;
  }
  log.info(dryRun ? 'retention dry run done' : 'retention run done', {
    removed: removed.length,
    instances: removed.reduce((n, r) => n + r.instances, 0),
    bytes: removed.reduce((n, r) => n + r.bytes, 0),
    kept: kept.length,
    truncated,
  });
  return { dryRun, removed, kept, truncated };
}

function footprint(files: readonly LiveInstanceFile[]): { instances: number; bytes: number } {
  return { instances: files.length, bytes: files.reduce((n, f) => n + f.sizeBytes, 0) };
}

type Verdict = KeptStudy | { studyInstanceUid: string; rule: string; state: StudyState; since: Date };

async function judge(pool: pg.Pool, rules: readonly RetentionRule[], study: Study, nowMs: number): Promise<Verdict> {
  const base = { studyInstanceUid: study.studyInstanceUid, state: study.state };
  const rule = ruleForStudy(rules, await studySources(pool, study.studyInstanceUid));
  if (!rule) return { ...base, reason: KeepReason.NoMatchingRule };
  const age = retentionAgeMs(rule, study.state);
  if (age === undefined) return { ...base, reason: KeepReason.FailedKept, rule: rule.name };
  if (nowMs - study.updatedAt.getTime() < age) return { ...base, reason: KeepReason.NotOldEnough, rule: rule.name };
  return { ...base, rule: rule.name, since: study.updatedAt };
}

/**
 * Remove one study in one transaction. The instance rows are locked first (the order a receipt
 * locks them: instance row, then study row), then the study row, which must still be as the scan
 * saw it. Rows are marked, the study moves to 'expunged' and the audit event is appended; then the
 * files are removed while the locks are held, so a receipt of the same SOP Instance (which waits
 * on its row) never has its new file removed; then COMMIT. A crash before COMMIT leaves the study
 * exported with some files gone: the next run finds it again and finishes (rm of a missing file is
 * no error), and only then is the deletion audited.
 */
async function expungeStudy(
  pool: pg.Pool,
  candidate: Study,
  rule: string,
  options: RetentionOptions,
  storageDir: string,
  log: Logger,
): Promise<RemovedStudy | KeptStudy> {
  const uid = candidate.studyInstanceUid;
  const keep = (reason: KeepReason): KeptStudy => ({ studyInstanceUid: uid, state: candidate.state, reason, rule });
  let dirs: string[] = [];
  let result: RemovedStudy | KeptStudy;
  try {
    result = await withTransaction(pool, async (c) => {
      const files = await lockLiveInstances(c, uid);
      const study = await lockStudy(c, uid);
      if (
        !study ||
        study.state !== candidate.state ||
        study.updatedAt.getTime() !== candidate.updatedAt.getTime() ||
        ruleForStudy(
          options.rules,
          files.map((f) => ({ via: f.receivedVia, actor: f.actor })),
        )?.name !== rule
      )
        return keep(KeepReason.Changed);
      if (files.some((f) => !isInside(storageDir, f.filePath))) return keep(KeepReason.OutsideStorage);
      const sops = files.map((f) => f.sopInstanceUid);
      const { bytes } = footprint(files);
      await markInstancesDeleted(c, uid, sops);
      if (!(await studyExpunged(c, uid))) return keep(KeepReason.Changed);
      await recordAudit(c, {
        kind: AuditEventKind.StudyDeleted,
        actor: options.actor ?? 'radscribe',
        studyInstanceUid: uid,
        sopInstanceUids: sops,
        detail: {
          rule,
          fromState: study.state,
          instances: sops.length,
          series: new Set(files.map((f) => f.seriesInstanceUid)).size,
          bytes,
          sources: [...new Set(files.map((f) => `${f.receivedVia}:${f.actor ?? ''}`))],
        },
      });
      for (const f of files) await rm(f.filePath, { force: true });
      dirs = [...new Set(files.map((f) => path.dirname(f.filePath)))];
      return { studyInstanceUid: uid, rule, state: study.state, since: study.updatedAt, instances: sops.length, bytes };
    });
  } catch (err: unknown) {
    log.error('retention could not remove a study', {
      studyInstanceUid: uid,
      code: errorCodeOf(err),
      error: normalizeErrorString(err),
    });
    return keep(KeepReason.DeleteFailed);
  }
  if ('reason' in result) {
    log.info('retention kept a study', { studyInstanceUid: uid, reason: result.reason, rule });
    return result;
  }
  // Empty series and study directories go too (best effort: one that is not empty stays).
  for (const d of [...dirs, ...new Set(dirs.map((d) => path.dirname(d)))]) {
    if (isInside(storageDir, d)) await rmdir(d).catch(() => undefined);
  }
  log.info('study removed by retention', {
    studyInstanceUid: uid,
    rule,
    instances: result.instances,
    bytes: result.bytes,
  });
  return result;
}

export interface RetentionSweeperOptions extends Omit<RetentionOptions, 'dryRun'> {
  readonly intervalMs?: number;
}

/**
 * The periodic retention pass of the running gateway: a self-rescheduling loop (STYLE §2.1, like the
 * QIDO poller), so passes never overlap; a failed pass is logged and the next one runs on time.
 */
export class RetentionSweeper {
  readonly #o: RetentionSweeperOptions;
  readonly #log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #inFlight: Promise<unknown> | undefined;
  #running = false;
  /** Studies removed since start, for the metrics. */
  removedStudies = 0;
  removedInstances = 0;

  constructor(options: RetentionSweeperOptions) {
    this.#o = options;
    this.#log = options.logger ?? childLogger('retention');
  }

  /** First pass after one interval (not at start-up, when an operator may still be checking the config). */
  start(): void {
    if (this.#running || this.#o.rules.length === 0) return;
    this.#running = true;
    this.#schedule();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#inFlight?.catch(() => undefined);
  }

  /** One pass now (also what each tick runs). */
  async runOnce(): Promise<RetentionReport> {
    const report = await runRetention({ ...this.#o, logger: this.#log });
    this.removedStudies += report.removed.length;
    this.removedInstances += report.removed.reduce((n, r) => n + r.instances, 0);
    return report;
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const p = this.runOnce().catch((err: unknown) => {
        this.#log.warn('retention pass failed', { code: errorCodeOf(err), error: normalizeErrorString(err) });
      });
      this.#inFlight = p;
      void p.then(() => {
        this.#inFlight = undefined;
        this.#schedule();
      });
    }, this.#o.intervalMs ?? DEFAULT_RETENTION_INTERVAL_MS);
    this.#timer.unref?.();
  }
}
