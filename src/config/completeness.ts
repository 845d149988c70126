import { aeTitleProblem } from '../dimse/ae-title.js';
import { ReceivedVia } from '../ingest/types.js';
import { type RuleValidator, regexProblem } from './routing-rules.js';

/**
 * Study completeness (issue 11 "Completeness and routing"), config `completeness`. DICOM has no
 * "study complete" signal (PS3.4 Annex B stores instances one by one), so a study counts as
 * complete when one of these holds, checked by the stability sweep (src/jobs/study-stability.ts)
 * under the study's row lock, so several gateway processes agree:
 *
 * - inactivity, per source: no instance of the study for `studyWindowMs` and each series idle for
 *   `seriesWindowMs` (mercure's study_complete_trigger / series_complete_trigger; MONAI's per-AE
 *   `timeout`). A source is matched per instance (how it came: via, the local AE, the calling AE,
 *   the remote node); a study from several sources waits for the longest of their windows. No
 *   source matches: `ingest.stabilityWindowMs` and `defaultSeriesWindowMs`.
 * - expected series (mercure's "List Series Received"): an `expect[]` rule whose study conditions
 *   hold and whose series are all there — every series idle for its series window, so a series still
 *   streaming in is not counted yet (mercure #32) — completes the study at once, without the window.
 * - an operator forces it (src/jobs/study-completion.ts, CLI and API).
 */

/** Conditions on how an instance arrived (all given must hold; within one list, any value). */
export interface SourceMatch {
  via?: ReceivedVia[];
  /** The local AE: C-STORE Called AE, or the {AET} of STOW-RS /dicomweb/aets/{AET}/studies. */
  calledAeTitle?: string[];
  /** C-STORE Calling AE (PS3.8 §9.3.2). */
  callingAeTitle?: string[];
  /** The remote node a WADO-RS retrieve (QIDO poller) fetched it from. */
  remoteNode?: string[];
}

export interface CompletenessSource {
  name: string;
  match: SourceMatch;
  studyWindowMs: number;
  seriesWindowMs: number;
}

export interface ExpectedSeriesRule {
  name: string;
  /** Source conditions (any instance of the study) and `modality` (any series). */
  match: SourceMatch & { modality?: string[] };
  /** At least this many series. */
  seriesCount?: number;
  /** Each regular expression (case-insensitive) matched by the Series Description of some series. */
  seriesDescriptions?: string[];
  /** Each modality present among the series. */
  modalities?: string[];
}

export interface CompletenessConfig {
  /** Series window where no source sets one. */
  defaultSeriesWindowMs: number;
  sources: CompletenessSource[];
  expect: ExpectedSeriesRule[];
}

/** A series counts as arrived after 10 s without a new instance (mercure's default is 60 s; a modality's C-STORE of one series is seconds). */
export const DEFAULT_SERIES_WINDOW_MS = 10_000;

const MAX_MS = 86_400_000;

function sourceMatch(v: RuleValidator, o: Record<string, unknown>, p: string, nodes: ReadonlySet<string>): SourceMatch {
  const out: SourceMatch = {};
  const list = (k: keyof SourceMatch): string[] | undefined => {
    if (!v.has(o, k)) return undefined;
    const xs = v.strArr(o, k, p);
    if (xs.length === 0) v.problem(`${p}.${k}`, 'must list at least one value (leave the key out for any)');
    return xs;
  };
  const via = list('via');
  const vias: readonly string[] = Object.values(ReceivedVia);
  for (const x of via ?? []) if (!vias.includes(x)) v.problem(`${p}.via`, `must be among ${vias.join(', ')}`);
  if (via) out.via = via as ReceivedVia[];
  for (const k of ['calledAeTitle', 'callingAeTitle'] as const) {
    const xs = list(k);
    if (!xs) continue;
    for (const [j, t] of xs.entries()) {
      const why = aeTitleProblem(t);
      if (why) v.problem(`${p}.${k}[${j}]`, `not a valid AE title: ${why}`);
    }
    out[k] = xs.map((t) => t.trim());
  }
  const remoteNode = list('remoteNode');
  for (const n of remoteNode ?? []) if (!nodes.has(n)) v.problem(`${p}.remoteNode`, `unknown remote node "${n}"`);
  if (remoteNode) out.remoteNode = remoteNode;
  return out;
}

/** `completeness` (optional): every problem reported with its path. */
export function validateCompleteness(
  v: RuleValidator,
  doc: Record<string, unknown>,
  nodes: ReadonlySet<string>,
): CompletenessConfig {
  const o = v.has(doc, 'completeness') ? v.obj(doc, 'completeness') : {};
  const p = 'completeness';
  const sources = v.arr(o, 'sources', p).map((s, i): CompletenessSource => {
    const sp = `${p}.sources[${i}]`;
    const so = v.asObj(s, sp);
    return {
      name: v.str(so, 'name', sp),
      match: sourceMatch(v, v.obj(so, 'match', sp), `${sp}.match`, nodes),
      studyWindowMs: v.int(so, 'studyWindowMs', sp, 0, MAX_MS),
      seriesWindowMs: v.int(so, 'seriesWindowMs', sp, 0, MAX_MS, DEFAULT_SERIES_WINDOW_MS),
    };
  });
  const expect = v.arr(o, 'expect', p).map((e, i): ExpectedSeriesRule => {
    const ep = `${p}.expect[${i}]`;
    const eo = v.asObj(e, ep);
    const mo = v.has(eo, 'match') ? v.obj(eo, 'match', ep) : {};
    const modality = v.has(mo, 'modality') ? v.strArr(mo, 'modality', `${ep}.match`) : undefined;
    const rule: ExpectedSeriesRule = {
      name: v.str(eo, 'name', ep),
      match: { ...sourceMatch(v, mo, `${ep}.match`, nodes), ...(modality ? { modality } : {}) },
      ...(v.has(eo, 'seriesCount') ? { seriesCount: v.int(eo, 'seriesCount', ep, 1, 10_000) } : {}),
      ...(v.has(eo, 'seriesDescriptions') ? { seriesDescriptions: v.strArr(eo, 'seriesDescriptions', ep) } : {}),
      ...(v.has(eo, 'modalities') ? { modalities: v.strArr(eo, 'modalities', ep) } : {}),
    };
    for (const [j, re] of (rule.seriesDescriptions ?? []).entries()) {
      const why = regexProblem(re);
      if (why) v.problem(`${ep}.seriesDescriptions[${j}]`, why);
    }
    if (rule.seriesCount === undefined && !rule.seriesDescriptions?.length && !rule.modalities?.length)
      v.problem(ep, 'give at least one of seriesCount, seriesDescriptions, modalities');
    return rule;
  });
  const names = [...sources.map((s) => s.name), ...expect.map((e) => e.name)];
  const seen = new Set<string>();
  for (const n of names) {
    if (n !== '' && seen.has(n)) v.problem(p, `duplicate name "${n}"`);
    seen.add(n);
  }
  return {
    defaultSeriesWindowMs: v.int(o, 'defaultSeriesWindowMs', p, 0, MAX_MS, DEFAULT_SERIES_WINDOW_MS),
    sources,
    expect,
  };
}
