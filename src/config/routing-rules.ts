import dcmjs from 'dcmjs';
import { aeTitleProblem } from '../dimse/ae-title.js';

/**
 * Routing rules (issue 11 "Completeness and routing"): config `routes[]`, ordered, first match wins
 * (mercure's rule list; dcm4chee's export rules with `dcmProperty` conditions). Today's
 * `routes[].match.modality / calledAeTitle` and `destination` keep their meaning; the rest is new.
 *
 * Conditions (all given must hold; within one list, any value):
 * - study level, over every instance of the study: `callingAeTitle` (the C-STORE Calling AE,
 *   PS3.8 §9.3.2), `calledAeTitle` (the local AE: C-STORE Called AE or STOW-RS /dicomweb/aets/{AET});
 * - series level: `modality` (0008,0060), `sopClassUid` (0008,0016), `bodyPartExamined`
 *   (0018,0015), `seriesDescription` (0008,103E, a regular expression), `tags` (any top-level
 *   attribute by keyword or (gggg,eeee): equals / regex / present / absent). A rule matches a study
 *   when ONE series satisfies all its series-level conditions together (so "CT and description
 *   /lung/" means a CT series described as lung, not a CT series next to some other lung series).
 *
 * Actions: `destinations` (several; `destination` is the one-destination form of before), `model`,
 * `selection` (the frame policy of src/pipeline/frame-selection.ts, key by key over the global
 * `selection`), and `ignore` (the study is not described at all). Evaluation and its explanation:
 * src/pipeline/routing.ts. This module only validates and normalises (STYLE §2.5).
 */

/** The subset of config.ts's Validator used here (structural, so config.ts keeps its class private). */
export interface RuleValidator {
  problem(p: string, msg: string): void;
  has(o: Record<string, unknown>, k: string): boolean;
  asObj(v: unknown, p: string): Record<string, unknown>;
  obj(o: Record<string, unknown>, k: string, parent?: string): Record<string, unknown>;
  arr(o: Record<string, unknown>, k: string, parent?: string): unknown[];
  str(o: Record<string, unknown>, k: string, parent?: string, allowEmpty?: boolean): string;
  strArr(o: Record<string, unknown>, k: string, parent?: string): string[];
  int(
    o: Record<string, unknown>,
    k: string,
    parent: string | undefined,
    min: number,
    max: number,
    dflt?: number,
  ): number;
  bool(o: Record<string, unknown>, k: string, parent?: string, dflt?: boolean): boolean;
}

/**
 * Regular expressions (series description, tag regex) are bounded twice: the pattern's length, and
 * the input each is run on (one value at a time, cut at {@link MAX_REGEX_INPUT_CHARS}). Series
 * Description is LO (64 characters, PS3.5 Table 6.2-1), so the cut never changes a conforming value;
 * a hostile 1 MB value cannot feed a backtracking pattern.
 */
export const MAX_REGEX_PATTERN_CHARS = 256;
export const MAX_REGEX_INPUT_CHARS = 1024;

/**
 * A quantified group that itself contains a quantifier — `(a+)+`, `(\w*)*`, `(x|y+){2,}` — is
 * the classic catastrophic-backtracking shape (nested quantifiers, "star height" 2). Refused at
 * start rather than timed at run time: JavaScript regular expressions cannot be interrupted.
 */
const NESTED_QUANTIFIER = /\((?:[^()\\]|\\.)*(?:[+*]|\{\d+,?\d*\})(?:[^()\\]|\\.)*\)(?:[+*]|\{\d+,?\d*\})/;

/** Why `pattern` is refused as a rule's regular expression; undefined when it is accepted. */
export function regexProblem(pattern: string): string | undefined {
  if (pattern.length === 0) return 'must not be empty';
  if (pattern.length > MAX_REGEX_PATTERN_CHARS) return `longer than ${MAX_REGEX_PATTERN_CHARS} characters`;
  if (NESTED_QUANTIFIER.test(pattern))
    return 'nested quantifiers (e.g. (a+)+) can backtrack catastrophically; rewrite without them';
  try {
    new RegExp(pattern, 'iu');
  } catch (err) {
    return `not a valid regular expression (${(err as Error).message})`;
  }
  return undefined;
}

/** One `tags[]` condition: exactly one of equals / regex / present / absent. */
export type TagCondition =
  | { readonly tag: string; readonly keyword: string; readonly equals: string }
  | { readonly tag: string; readonly keyword: string; readonly regex: string }
  | { readonly tag: string; readonly keyword: string; readonly present: true }
  | { readonly tag: string; readonly keyword: string; readonly absent: true };

export const TagTest = { Equals: 'equals', Regex: 'regex', Present: 'present', Absent: 'absent' } as const;
export type TagTest = (typeof TagTest)[keyof typeof TagTest];

export interface RouteMatch {
  modality?: string[];
  sopClassUid?: string[];
  bodyPartExamined?: string[];
  callingAeTitle?: string[];
  /** The local AE the study's instances were sent to (C-STORE Called AE, or STOW-RS to /dicomweb/aets/{AET}/studies). */
  calledAeTitle?: string[];
  /** Regular expression, case-insensitive, searched in each series' Series Description. */
  seriesDescription?: string;
  tags?: TagCondition[];
}

/** The frame policy a rule chooses; each key given replaces the global `selection` key. */
export interface RouteSelection {
  eachImage?: string[];
  perSeriesSlices?: number;
  multiFrameFrames?: number;
}

export interface RoutingRule {
  /** Shown in the job result, the export audit and the rule tester. */
  name: string;
  match: RouteMatch;
  /** The first of `destinations` (the one-destination form of before issue 11); '' for an ignore rule. */
  destination: string;
  /** Every destination the draft goes to, in order. Absent: `[destination]`. */
  destinations?: string[];
  /** Name of the model bundle (config supports one: it must be the configured bundle's name). */
  model?: string;
  selection?: RouteSelection;
  /** Matching studies are not described (no job result but "ignored", no SR). */
  ignore?: boolean;
}

/** (gggg,eeee) or ggggeeee, hex. */
const TAG_RE = /^\(?([0-9A-Fa-f]{4}),?([0-9A-Fa-f]{4})\)?$/;

/** A keyword or (gggg,eeee) → the tag as 8 upper-case hex digits and its keyword ('' when unknown, private). */
export function resolveTag(s: string): { tag: string; keyword: string } | undefined {
  const dict = dcmjs.data.DicomMetaDictionary as unknown as {
    nameMap: Record<string, { tag: string; name: string }>;
    dictionary: Record<string, { name: string } | undefined>;
  };
  const m = TAG_RE.exec(s.trim());
  if (m) {
    const g = (m[1] as string).toUpperCase();
    const e = (m[2] as string).toUpperCase();
    return { tag: `${g}${e}`, keyword: dict.dictionary[`(${g},${e})`]?.name ?? '' };
  }
  const entry = dict.nameMap[s.trim()];
  if (!entry) return undefined;
  return { tag: entry.tag.replace(/[(),]/g, '').toUpperCase(), keyword: entry.name };
}

const MATCH_KEYS = ['modality', 'sopClassUid', 'bodyPartExamined', 'callingAeTitle', 'calledAeTitle'] as const;

/**
 * `routes[]`: each rule validated with every problem reported (STYLE §2.5). `destNames`: the
 * configured destinations; `modelName`: the one model bundle's name (basename of model.bundle).
 */
export function validateRoutingRules(
  v: RuleValidator,
  doc: Record<string, unknown>,
  destNames: ReadonlySet<string>,
  modelName: string,
): RoutingRule[] {
  return v.arr(doc, 'routes').map((r, i): RoutingRule => {
    const p = `routes[${i}]`;
    const ro = v.asObj(r, p);
    const name = v.str(ro, 'name', p);
    const match = v.obj(ro, 'match', p);
    const mp = `${p}.match`;
    const out: RouteMatch = {};
    for (const k of MATCH_KEYS) {
      if (!v.has(match, k)) continue;
      const xs = v.strArr(match, k, mp);
      if (xs.length === 0) v.problem(`${mp}.${k}`, 'must list at least one value (leave the key out for any)');
      if (k === 'calledAeTitle' || k === 'callingAeTitle')
        for (const [j, t] of xs.entries()) {
          const why = aeTitleProblem(t);
          if (why) v.problem(`${mp}.${k}[${j}]`, `not a valid AE title: ${why}`);
        }
      out[k] = k === 'calledAeTitle' || k === 'callingAeTitle' ? xs.map((t) => t.trim()) : xs;
    }
    if (v.has(match, 'seriesDescription')) {
      const re = v.str(match, 'seriesDescription', mp);
      const why = regexProblem(re);
      if (why) v.problem(`${mp}.seriesDescription`, why);
      out.seriesDescription = re;
    }
    if (v.has(match, 'tags')) out.tags = v.arr(match, 'tags', mp).map((t, j) => tagCondition(v, t, `${mp}.tags[${j}]`));

    const ignore = v.bool(ro, 'ignore', p, false);
    const hasOne = v.has(ro, 'destination');
    const hasMany = v.has(ro, 'destinations');
    let destinations: string[] = [];
    if (hasOne && hasMany) v.problem(p, 'give destination or destinations, not both');
    if (hasOne) destinations = [v.str(ro, 'destination', p)];
    else if (hasMany) destinations = v.strArr(ro, 'destinations', p);
    if (ignore && destinations.length > 0) v.problem(p, 'an ignore rule sends nothing: leave destination(s) out');
    if (!ignore && destinations.length === 0) v.problem(`${p}.destinations`, 'is required (or ignore: true)');
    for (const [j, d] of destinations.entries())
      if (!destNames.has(d))
        v.problem(hasOne ? `${p}.destination` : `${p}.destinations[${j}]`, `unknown destination "${d}"`);
    if (new Set(destinations).size !== destinations.length) v.problem(`${p}.destinations`, 'lists a destination twice');

    let model: string | undefined;
    if (v.has(ro, 'model')) {
      model = v.str(ro, 'model', p);
      // One model bundle per gateway (config model.bundle): a rule may name it, to say so
      // explicitly and to fail at start when the bundle is changed under it.
      if (model !== modelName)
        v.problem(`${p}.model`, `unknown model "${model}" (the configured bundle is "${modelName}")`);
    }
    let selection: RouteSelection | undefined;
    if (v.has(ro, 'selection')) {
      const so = v.obj(ro, 'selection', p);
      const sp = `${p}.selection`;
      selection = {
        ...(v.has(so, 'eachImage') ? { eachImage: v.strArr(so, 'eachImage', sp) } : {}),
        ...(v.has(so, 'perSeriesSlices') ? { perSeriesSlices: v.int(so, 'perSeriesSlices', sp, 1, 64) } : {}),
        ...(v.has(so, 'multiFrameFrames') ? { multiFrameFrames: v.int(so, 'multiFrameFrames', sp, 1, 64) } : {}),
      };
      if (ignore) v.problem(sp, 'an ignore rule describes nothing: leave selection out');
    }
    return {
      name,
      match: out,
      destination: destinations[0] ?? '',
      destinations,
      ...(model !== undefined ? { model } : {}),
      ...(selection ? { selection } : {}),
      ...(ignore ? { ignore } : {}),
    };
  });
}

function tagCondition(v: RuleValidator, t: unknown, p: string): TagCondition {
  const o = v.asObj(t, p);
  const raw = v.str(o, 'tag', p);
  const resolved = raw === '' ? undefined : resolveTag(raw);
  if (raw !== '' && !resolved) v.problem(`${p}.tag`, `"${raw}" is neither a DICOM keyword nor (gggg,eeee)`);
  const base = { tag: resolved?.tag ?? '', keyword: resolved?.keyword ?? '' };
  const tests = Object.values(TagTest).filter((k) => v.has(o, k));
  if (tests.length !== 1) {
    v.problem(p, `give exactly one of ${Object.values(TagTest).join(', ')}`);
    return { ...base, present: true };
  }
  const test = tests[0] as TagTest;
  if (test === TagTest.Equals) return { ...base, equals: v.str(o, 'equals', p, true) };
  if (test === TagTest.Regex) {
    const re = v.str(o, 'regex', p);
    const why = regexProblem(re);
    if (why) v.problem(`${p}.regex`, why);
    return { ...base, regex: re };
  }
  if (!v.bool(o, test, p)) v.problem(`${p}.${test}`, 'must be true (use the other test for the opposite)');
  return test === TagTest.Present ? { ...base, present: true } : { ...base, absent: true };
}

/** The tags any rule reads (8 hex digits), so the evaluator reads only those from a header. */
export function referencedTags(rules: readonly RoutingRule[]): string[] {
  return [...new Set(rules.flatMap((r) => (r.match.tags ?? []).map((t) => t.tag)).filter((t) => t !== ''))];
}
