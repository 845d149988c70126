import {
  MAX_REGEX_INPUT_CHARS,
  type RouteSelection,
  type RoutingRule,
  type TagCondition,
} from '../config/routing-rules.js';
import type { RouteConfig } from '../config.js';
import { normalizeAeTitle } from '../dimse/ae-title.js';

/**
 * Routing (issue 11): the first rule of config `routes[]` whose conditions hold for the study
 * decides what happens to it — destinations, model, frame policy, or ignore (mercure-style ordered
 * rules; semantics in src/config/routing-rules.ts). No rule matches: `defaultDestination`, the
 * global frame policy. {@link explainRouting} evaluates every rule, not only up to the first
 * match, and says for each condition what was wanted, what the study has, and whether it holds:
 * the rule tester (CLI `radscribe rules test`, API POST /api/v1/rules/test) prints exactly that.
 */

/** What a rule is evaluated against, for one series (values from the stored header columns). */
export interface SeriesFacts {
  readonly seriesInstanceUid: string;
  readonly modalities: readonly string[];
  readonly sopClassUids: readonly string[];
  readonly bodyPartsExamined: readonly string[];
  readonly seriesDescriptions: readonly string[];
  /**
   * The attributes the rules' `tags` conditions name (8 hex digits), read from one instance of
   * the series (the first by Instance Number): its values as text, [] when present without a value
   * or with a binary or sequence value, null when absent. A tag not in the map was not read.
   */
  readonly tags?: Readonly<Record<string, readonly string[] | null>>;
}

export interface StudyFacts {
  readonly studyInstanceUid?: string;
  /** C-STORE Calling AE titles among the study's instances. */
  readonly callingAeTitles: readonly string[];
  /** Local AEs the study's instances were sent to (C-STORE Called AE, STOW-RS per-AE path). */
  readonly calledAeTitles: readonly string[];
  readonly series: readonly SeriesFacts[];
}

/** One condition's outcome, for the tester: what was wanted, what was there, and why it holds or not. */
export interface ConditionResult {
  readonly condition: string;
  readonly wanted: unknown;
  readonly actual: readonly string[] | null;
  readonly holds: boolean;
  readonly why: string;
}

export interface SeriesExplanation {
  readonly seriesInstanceUid: string;
  readonly holds: boolean;
  readonly conditions: readonly ConditionResult[];
}

export interface RuleExplanation {
  readonly rule: string;
  readonly matched: boolean;
  /** Study-level conditions (calling and called AE). */
  readonly study: readonly ConditionResult[];
  /** Series-level conditions per series; empty when the rule has none. */
  readonly series: readonly SeriesExplanation[];
  /** The series that satisfied all series-level conditions, when the rule matched through one. */
  readonly matchedSeries?: string;
  readonly why: string;
}

/** Which rule decided, and what it chose. */
export interface RoutingDecision {
  /** Name of the rule; null when none matched (the default route). */
  readonly route: string | null;
  /** True: the study is not described (an ignore rule matched). */
  readonly ignore: boolean;
  /** Where the draft goes, in order (empty for an ignored study). */
  readonly destinations: readonly string[];
  /** The first of `destinations` (the one destination of before issue 11); '' when ignored. */
  readonly destination: string;
  /** The rule's frame policy (key by key over the global one), if it sets one. */
  readonly selection?: RouteSelection;
  readonly model?: string;
  /** One line: why this decision (the rule and the series that matched, or "no rule matched"). */
  readonly why: string;
}

export interface RoutingExplanation {
  readonly decision: RoutingDecision;
  readonly rules: readonly RuleExplanation[];
}

const upper = (xs: readonly string[]): Set<string> => new Set(xs.map((x) => x.trim().toUpperCase()));

function anyOf(
  condition: string,
  wanted: readonly string[],
  actual: readonly string[],
  fold: boolean,
): ConditionResult {
  const have = fold ? upper(actual) : new Set(actual);
  const hit = wanted.find((w) => have.has(fold ? w.trim().toUpperCase() : w));
  return {
    condition,
    wanted,
    actual,
    holds: hit !== undefined,
    why:
      hit !== undefined
        ? `has ${hit}`
        : actual.length === 0
          ? `none recorded; wanted any of ${wanted.join(', ')}`
          : `has ${actual.join(', ')}; wanted any of ${wanted.join(', ')}`,
  };
}

/** Regular expressions of the rules, compiled once (patterns were validated at start). */
const compiled = new Map<string, RegExp>();
function regex(pattern: string): RegExp {
  let re = compiled.get(pattern);
  if (!re) {
    re = new RegExp(pattern, 'iu');
    compiled.set(pattern, re);
  }
  return re;
}

/** Search one value at a time, each cut at MAX_REGEX_INPUT_CHARS (src/config/routing-rules.ts). */
function regexHit(pattern: string, values: readonly string[]): string | undefined {
  const re = regex(pattern);
  return values.find((s) => re.test(s.slice(0, MAX_REGEX_INPUT_CHARS)));
}

function tagResult(t: TagCondition, series: SeriesFacts): ConditionResult {
  const name = t.keyword
    ? `${t.keyword} (${t.tag.slice(0, 4)},${t.tag.slice(4)})`
    : `(${t.tag.slice(0, 4)},${t.tag.slice(4)})`;
  const condition = `tag ${name}`;
  const read = series.tags && t.tag in series.tags;
  const values = read ? (series.tags?.[t.tag] ?? null) : null;
  if (!read)
    return { condition, wanted: t, actual: null, holds: false, why: 'not read for this series (no header available)' };
  if ('present' in t)
    return {
      condition,
      wanted: { present: true },
      actual: values,
      holds: values !== null,
      why: values !== null ? 'present' : 'absent',
    };
  if ('absent' in t)
    return {
      condition,
      wanted: { absent: true },
      actual: values,
      holds: values === null,
      why: values === null ? 'absent' : 'present',
    };
  if (values === null) return { condition, wanted: t, actual: null, holds: false, why: 'absent' };
  // Each value, and the whole multi-valued value as written (values joined by \, PS3.5 §6.4).
  const candidates = values.length > 1 ? [...values, values.join('\\')] : values;
  if ('equals' in t) {
    const hit = candidates.find((x) => x.trim() === t.equals.trim());
    return {
      condition,
      wanted: { equals: t.equals },
      actual: values,
      holds: hit !== undefined,
      why:
        hit !== undefined
          ? `equals "${t.equals}"`
          : `is ${values.map((x) => `"${x}"`).join('\\') || 'empty'}; wanted "${t.equals}"`,
    };
  }
  const hit = regexHit(t.regex, candidates);
  return {
    condition,
    wanted: { regex: t.regex },
    actual: values,
    holds: hit !== undefined,
    why: hit !== undefined ? `"${hit}" matches /${t.regex}/i` : `no value matches /${t.regex}/i`,
  };
}

/** The series-level conditions of a rule, for one series. */
function seriesResults(rule: RoutingRule, s: SeriesFacts): ConditionResult[] {
  const m = rule.match;
  const out: ConditionResult[] = [];
  if (m.modality) out.push(anyOf('modality', m.modality, s.modalities, true));
  if (m.sopClassUid) out.push(anyOf('sopClassUid', m.sopClassUid, s.sopClassUids, false));
  if (m.bodyPartExamined) out.push(anyOf('bodyPartExamined', m.bodyPartExamined, s.bodyPartsExamined, true));
  if (m.seriesDescription !== undefined) {
    const hit = regexHit(m.seriesDescription, s.seriesDescriptions);
    out.push({
      condition: 'seriesDescription',
      wanted: m.seriesDescription,
      actual: s.seriesDescriptions,
      holds: hit !== undefined,
      why:
        hit !== undefined
          ? `"${hit}" matches /${m.seriesDescription}/i`
          : s.seriesDescriptions.length === 0
            ? 'no Series Description'
            : `${s.seriesDescriptions.map((d) => `"${d}"`).join(', ')} do not match /${m.seriesDescription}/i`,
    });
  }
  for (const t of m.tags ?? []) out.push(tagResult(t, s));
  return out;
}

function hasSeriesConditions(rule: RoutingRule): boolean {
  const m = rule.match;
  return !!(m.modality || m.sopClassUid || m.bodyPartExamined || m.seriesDescription !== undefined || m.tags?.length);
}

export function explainRule(rule: RoutingRule, facts: StudyFacts): RuleExplanation {
  const study: ConditionResult[] = [];
  const norm = (xs: readonly string[]) => xs.map(normalizeAeTitle);
  // AE titles compare case-sensitively, spaces at the ends ignored (PS3.5 AE VR).
  if (rule.match.callingAeTitle)
    study.push(anyOf('callingAeTitle', norm(rule.match.callingAeTitle), norm(facts.callingAeTitles), false));
  if (rule.match.calledAeTitle)
    study.push(anyOf('calledAeTitle', norm(rule.match.calledAeTitle), norm(facts.calledAeTitles), false));
  const studyHolds = study.every((c) => c.holds);
  if (!hasSeriesConditions(rule)) {
    const failed = study.find((c) => !c.holds);
    return {
      rule: rule.name,
      matched: studyHolds,
      study,
      series: [],
      why: failed
        ? `${failed.condition}: ${failed.why}`
        : study.length === 0
          ? 'matches every study'
          : 'study conditions hold',
    };
  }
  const series = facts.series.map((s): SeriesExplanation => {
    const conditions = seriesResults(rule, s);
    return { seriesInstanceUid: s.seriesInstanceUid, holds: conditions.every((c) => c.holds), conditions };
  });
  const through = series.find((s) => s.holds);
  const failedStudy = study.find((c) => !c.holds);
  const matched = studyHolds && through !== undefined;
  return {
    rule: rule.name,
    matched,
    study,
    series,
    ...(through ? { matchedSeries: through.seriesInstanceUid } : {}),
    why: failedStudy
      ? `${failedStudy.condition}: ${failedStudy.why}`
      : through
        ? `series ${through.seriesInstanceUid}: ${through.conditions.map((c) => `${c.condition} ${c.why}`).join('; ')}`
        : series.length === 0
          ? 'the study has no series'
          : 'no series satisfies all series conditions',
  };
}

/** Every rule evaluated (for the tester), and the decision of the first that matched. */
export function explainRouting(
  rules: readonly RouteConfig[],
  defaultDestination: string,
  facts: StudyFacts,
): RoutingExplanation {
  const explained = rules.map((r) => explainRule(r, facts));
  const i = explained.findIndex((e) => e.matched);
  const rule = i >= 0 ? rules[i] : undefined;
  const why = i >= 0 ? `rule "${rule?.name}": ${explained[i]?.why}` : 'no rule matched: default destination';
  if (!rule)
    return {
      decision: {
        route: null,
        ignore: false,
        destinations: [defaultDestination],
        destination: defaultDestination,
        why,
      },
      rules: explained,
    };
  const destinations = rule.ignore ? [] : (rule.destinations ?? [rule.destination]);
  return {
    decision: {
      route: rule.name,
      ignore: rule.ignore === true,
      destinations,
      destination: destinations[0] ?? '',
      ...(rule.selection ? { selection: rule.selection } : {}),
      ...(rule.model !== undefined ? { model: rule.model } : {}),
      why,
    },
    rules: explained,
  };
}

/** The decision only: evaluation stops at the first rule that matches. */
export function decideRoute(
  rules: readonly RouteConfig[],
  defaultDestination: string,
  facts: StudyFacts,
): RoutingDecision {
  for (const [i, r] of rules.entries())
    if (explainRule(r, facts).matched) return explainRouting(rules.slice(0, i + 1), defaultDestination, facts).decision;
  return explainRouting([], defaultDestination, facts).decision;
}

/** Facts with only modalities and called AEs (the routing inputs before issue 11): one series per modality. */
function legacyFacts(studyModalities: readonly string[], studyCalledAeTitles: readonly string[]): StudyFacts {
  const series = studyModalities.map((m, i) => ({
    seriesInstanceUid: `modality-${i}`,
    modalities: [m],
    sopClassUids: [],
    bodyPartsExamined: [],
    seriesDescriptions: [],
  }));
  return { callingAeTitles: [], calledAeTitles: studyCalledAeTitles, series };
}

/**
 * The destination and route for a study known by its modalities and called AEs only (the shape of
 * before issue 11; kept for `radscribe describe` and older tests). A modality matches as before:
 * any instance of the study has it.
 */
export function routeStudy(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
  studyCalledAeTitles: readonly string[] = [],
): { destination: string; route: string | null } {
  const d = decideRoute(routes, defaultDestination, legacyFacts(studyModalities, studyCalledAeTitles));
  return { destination: d.destination, route: d.route };
}

export function chooseDestination(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
): string {
  return routeStudy(routes, defaultDestination, studyModalities).destination;
}

/** The global frame policy with a rule's keys over it. */
export function effectiveSelection<
  S extends { eachImage: readonly string[]; perSeriesSlices: number; multiFrameFrames?: number },
>(global: S, rule: RouteSelection | undefined): S {
  return rule ? { ...global, ...rule } : global;
}
