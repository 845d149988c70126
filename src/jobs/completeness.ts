import type { CompletenessConfig, ExpectedSeriesRule, SourceMatch } from '../config/completeness.js';
import { MAX_REGEX_INPUT_CHARS } from '../config/routing-rules.js';
import type { Queryable } from '../db/pool.js';
import { normalizeAeTitle } from '../dimse/ae-title.js';
import { ReceivedVia } from '../ingest/types.js';

/**
 * Is a study complete? (issue 11 "Completeness and routing"; the rules are in
 * src/config/completeness.ts.) Evaluated by the stability sweep (study-stability.ts) inside the
 * transaction that holds the study's row lock, taken with FOR UPDATE SKIP LOCKED: two gateway
 * processes sweeping at once never both judge one study (the second skips it), and a receipt, whose
 * RECORD_RECEIPT updates the same row, waits until the judgement commits — so the facts read
 * under the lock are the facts the decision is about.
 */

/** Why a study counts as complete; recorded as `reason` in the 'study-queued' audit event. */
export const CompletionReason = {
  /** No instance for the study window, and each series idle for its series window. */
  WindowElapsed: 'window-elapsed',
  /** An `expect[]` rule was met (all series arrived and idle for their series window). */
  ExpectedSeries: 'expected-series',
  /** Already 'stable' (judged complete earlier; waited for a running describe job). */
  AlreadyStable: 'already-stable',
} as const;
export type CompletionReason = (typeof CompletionReason)[keyof typeof CompletionReason];

/** The study row, locked; none when another process holds it or it is no longer settling. */
export const LOCK_SETTLING_STUDY = `
SELECT state, (extract(epoch FROM now() - last_received_at) * 1000)::double precision AS idle_ms
  FROM studies
 WHERE study_instance_uid = $1 AND state IN ('receiving', 'stable')
   FOR UPDATE SKIP LOCKED`;

/**
 * The study's live instances grouped by series and source (how each came), with how long each
 * group has been idle. Our own exported drafts routed back to us are no input (RECORD_RECEIPT does
 * not count them as activity either). instances_live_study_idx covers the scan.
 */
export const SELECT_SERIES_ACTIVITY = `
SELECT i.series_instance_uid, i.received_via, i.called_ae_title, i.actor,
       array_remove(array_agg(DISTINCT i.modality), NULL) AS modalities,
       array_remove(array_agg(DISTINCT i.series_description), NULL) AS descriptions,
       (extract(epoch FROM now() - max(i.received_at)) * 1000)::double precision AS idle_ms
  FROM instances i
 WHERE i.study_instance_uid = $1 AND i.deleted_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM sr_exports e WHERE e.sop_instance_uid = i.sop_instance_uid)
 GROUP BY 1, 2, 3, 4`;

/** What a study is judged by. */
export interface JudgePolicy {
  readonly stabilityWindowMs: number;
  readonly completeness: CompletenessConfig;
  /**
   * Epoch ms since when this process listens: quiet before it does not count, since senders could
   * not reach a gateway that was down (the crash-trial rule of worker.ts, per study).
   */
  readonly listeningSince?: number;
}

/** One (series, source) group of a study's instances. */
export interface SeriesActivity {
  readonly seriesInstanceUid: string;
  readonly via: string;
  readonly calledAeTitle: string | null;
  /** Calling AE (C-STORE), remote node (WADO-RS), or HTTP user (STOW-RS). */
  readonly actor: string | null;
  readonly modalities: readonly string[];
  readonly descriptions: readonly string[];
  readonly idleMs: number;
}

export interface CompletenessVerdict {
  readonly complete: boolean;
  readonly reason?: CompletionReason;
  /** The expect[] rule met, for reason expected-series. */
  readonly rule?: string;
  readonly studyWindowMs: number;
  readonly seriesWindowMs: number;
  /** Names of the completeness sources that matched the study's instances. */
  readonly sources: readonly string[];
  readonly seriesCount: number;
}

function sourceHolds(m: SourceMatch, g: SeriesActivity): boolean {
  if (m.via && !m.via.includes(g.via as ReceivedVia)) return false;
  if (m.calledAeTitle && !m.calledAeTitle.map(normalizeAeTitle).includes(normalizeAeTitle(g.calledAeTitle ?? '')))
    return false;
  if (m.callingAeTitle) {
    if (g.via !== ReceivedVia.CStore) return false;
    if (!m.callingAeTitle.map(normalizeAeTitle).includes(normalizeAeTitle(g.actor ?? ''))) return false;
  }
  if (m.remoteNode && (g.via !== ReceivedVia.WadoRs || !m.remoteNode.includes(g.actor ?? ''))) return false;
  return true;
}

function expectationMet(rule: ExpectedSeriesRule, groups: readonly SeriesActivity[]): boolean {
  const { modality, ...source } = rule.match;
  if (Object.keys(source).length > 0 && !groups.some((g) => sourceHolds(source, g))) return false;
  const series = new Map<string, { modalities: Set<string>; descriptions: Set<string> }>();
  for (const g of groups) {
    const s = series.get(g.seriesInstanceUid) ?? { modalities: new Set(), descriptions: new Set() };
    for (const m of g.modalities) s.modalities.add(m.toUpperCase());
    for (const d of g.descriptions) s.descriptions.add(d);
    series.set(g.seriesInstanceUid, s);
  }
  const all = [...series.values()];
  if (modality && !all.some((s) => modality.some((m) => s.modalities.has(m.toUpperCase())))) return false;
  if (rule.seriesCount !== undefined && series.size < rule.seriesCount) return false;
  for (const m of rule.modalities ?? []) if (!all.some((s) => s.modalities.has(m.toUpperCase()))) return false;
  for (const pattern of rule.seriesDescriptions ?? []) {
    const re = new RegExp(pattern, 'iu');
    if (!all.some((s) => [...s.descriptions].some((d) => re.test(d.slice(0, MAX_REGEX_INPUT_CHARS))))) return false;
  }
  return true;
}

/**
 * The verdict for a study idle for `studyIdleMs` whose instances form `groups`. Each group takes
 * the windows of the first source that matches it (default: `stabilityWindowMs` and
 * `defaultSeriesWindowMs`); the study waits for the longest study window among its groups, and each
 * series for the longest series window among its groups. Pure: the tests call it directly.
 */
export function judgeCompleteness(
  policy: { readonly stabilityWindowMs: number; readonly completeness: CompletenessConfig },
  studyIdleMs: number,
  groups: readonly SeriesActivity[],
): CompletenessVerdict {
  const c = policy.completeness;
  let studyWindowMs = 0;
  const seriesWindow = new Map<string, number>();
  const seriesIdle = new Map<string, number>();
  const sources = new Set<string>();
  for (const g of groups) {
    const src = c.sources.find((s) => sourceHolds(s.match, g));
    if (src) sources.add(src.name);
    studyWindowMs = Math.max(studyWindowMs, src?.studyWindowMs ?? policy.stabilityWindowMs);
    const sw = src?.seriesWindowMs ?? c.defaultSeriesWindowMs;
    seriesWindow.set(g.seriesInstanceUid, Math.max(seriesWindow.get(g.seriesInstanceUid) ?? 0, sw));
    seriesIdle.set(
      g.seriesInstanceUid,
      Math.min(seriesIdle.get(g.seriesInstanceUid) ?? Number.POSITIVE_INFINITY, g.idleMs),
    );
  }
  if (groups.length === 0) studyWindowMs = policy.stabilityWindowMs;
  const maxSeriesWindow = Math.max(0, ...seriesWindow.values());
  // Every series present has stopped arriving: none is still streaming in (mercure #32).
  const seriesSettled = [...seriesIdle].every(([uid, idle]) => idle >= (seriesWindow.get(uid) ?? 0));
  const base = { studyWindowMs, seriesWindowMs: maxSeriesWindow, sources: [...sources], seriesCount: seriesIdle.size };
  if (studyIdleMs >= studyWindowMs && seriesSettled)
    return { complete: true, reason: CompletionReason.WindowElapsed, ...base };
  if (seriesSettled && groups.length > 0) {
    const met = c.expect.find((r) => expectationMet(r, groups));
    if (met) return { complete: true, reason: CompletionReason.ExpectedSeries, rule: met.name, ...base };
  }
  return { complete: false, ...base };
}

/** The shortest wait after which any study could be complete: the sweep's scan looks at studies idle at least this long. */
export function shortestWindowMs(policy: {
  readonly stabilityWindowMs: number;
  readonly completeness: CompletenessConfig;
}): number {
  const c = policy.completeness;
  const windows = [policy.stabilityWindowMs, ...c.sources.map((s) => s.studyWindowMs)];
  if (c.expect.length > 0) windows.push(c.defaultSeriesWindowMs, ...c.sources.map((s) => s.seriesWindowMs));
  return Math.min(...windows);
}

interface ActivityRow {
  series_instance_uid: string;
  received_via: string;
  called_ae_title: string | null;
  actor: string | null;
  modalities: string[];
  descriptions: string[];
  idle_ms: number;
}

/**
 * Lock a settling study (skipping it when another process holds it) and judge it. Null: not
 * lockable now or no longer settling. Call inside the transaction that will promote it.
 */
export async function lockAndJudge(
  q: Queryable,
  studyInstanceUid: string,
  policy: JudgePolicy,
): Promise<(CompletenessVerdict & { state: string }) | null> {
  const listening =
    policy.listeningSince === undefined ? Number.POSITIVE_INFINITY : Math.max(0, Date.now() - policy.listeningSince);
  const idle = (ms: number): number => Math.min(Number(ms), listening);
  const { rows } = await q.query<{ state: string; idle_ms: number }>(LOCK_SETTLING_STUDY, [studyInstanceUid]);
  const row = rows[0];
  if (!row) return null;
  const activity = await q.query<ActivityRow>(SELECT_SERIES_ACTIVITY, [studyInstanceUid]);
  const groups = activity.rows.map(
    (r): SeriesActivity => ({
      seriesInstanceUid: r.series_instance_uid,
      via: r.received_via,
      calledAeTitle: r.called_ae_title,
      actor: r.actor,
      modalities: r.modalities ?? [],
      descriptions: r.descriptions ?? [],
      idleMs: idle(r.idle_ms),
    }),
  );
  if (row.state === 'stable') {
    const v = judgeCompleteness(policy, idle(row.idle_ms), groups);
    return { ...v, complete: true, reason: CompletionReason.AlreadyStable, state: row.state };
  }
  return { ...judgeCompleteness(policy, idle(row.idle_ms), groups), state: row.state };
}
