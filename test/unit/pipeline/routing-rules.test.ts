import path from 'node:path';
import { type CompletenessConfig, DEFAULT_SERIES_WINDOW_MS } from '../../../src/config/completeness.js';
import {
  MAX_REGEX_INPUT_CHARS,
  MAX_REGEX_PATTERN_CHARS,
  regexProblem,
  resolveTag,
} from '../../../src/config/routing-rules.js';
import { type LoadConfigOptions, loadConfig, type RouteConfig } from '../../../src/config.js';
import { ConfigError } from '../../../src/errors.js';
import { judgeCompleteness, type SeriesActivity, shortestWindowMs } from '../../../src/jobs/completeness.js';
import { decideRoute, explainRouting, routeStudy, type StudyFacts } from '../../../src/pipeline/routing.js';
import { testRulesOnFile } from '../../../src/pipeline/rule-tester.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/**
 * Issue 11 "Completeness and routing": each condition type of the routing rules, the explanation
 * the tester prints, the configuration's validation (regex guards, unknown tags, destinations, the
 * one model), and the completeness judgement (per-source windows, expected series).
 */

const IMAGE_TYPE = '00080008';
const PROTOCOL = '00181030';

const lungCt = {
  seriesInstanceUid: '1.2.3.2',
  modalities: ['CT'],
  sopClassUids: ['1.2.840.10008.5.1.4.1.1.2'],
  bodyPartsExamined: ['CHEST'],
  seriesDescriptions: ['Lung 1.0 Axial'],
  tags: { [IMAGE_TYPE]: ['ORIGINAL', 'PRIMARY', 'AXIAL'], [PROTOCOL]: null },
};
const scout = {
  seriesInstanceUid: '1.2.3.1',
  modalities: ['CT'],
  sopClassUids: ['1.2.840.10008.5.1.4.1.1.2'],
  bodyPartsExamined: ['CHEST'],
  seriesDescriptions: ['Topogram'],
  tags: { [IMAGE_TYPE]: ['ORIGINAL', 'PRIMARY', 'LOCALIZER'], [PROTOCOL]: null },
};
const study: StudyFacts = {
  studyInstanceUid: '1.2.3',
  callingAeTitles: ['CT_SCANNER'],
  calledAeTitles: ['CT_AI'],
  series: [scout, lungCt],
};
const tag = (keyword: string) => resolveTag(keyword) as { tag: string; keyword: string };
const rule = (r: Partial<RouteConfig> & { match: RouteConfig['match'] }): RouteConfig => ({
  name: 'r',
  destination: 'b',
  destinations: ['b'],
  ...r,
});
const matched = (r: RouteConfig, f: StudyFacts = study) => explainRouting([r], 'outbox', f).rules[0]?.matched;

describe('routing rule conditions', () => {
  it('modality, SOP class and body part: any value of the list, case-folded where the VR is CS', () => {
    expect(matched(rule({ match: { modality: ['mr', 'ct'] } }))).toBe(true);
    expect(matched(rule({ match: { modality: ['MR'] } }))).toBe(false);
    expect(matched(rule({ match: { sopClassUid: ['1.2.840.10008.5.1.4.1.1.2'] } }))).toBe(true);
    expect(matched(rule({ match: { sopClassUid: ['1.2.840.10008.5.1.4.1.1.4'] } }))).toBe(false);
    expect(matched(rule({ match: { bodyPartExamined: ['chest'] } }))).toBe(true);
    expect(matched(rule({ match: { bodyPartExamined: ['HEAD'] } }))).toBe(false);
  });

  it('calling and called AE: study level, case-sensitive, spaces at the ends ignored (PS3.5 AE)', () => {
    expect(matched(rule({ match: { callingAeTitle: ['CT_SCANNER '] } }))).toBe(true);
    expect(matched(rule({ match: { callingAeTitle: ['ct_scanner'] } }))).toBe(false);
    expect(matched(rule({ match: { calledAeTitle: ['CT_AI'] } }))).toBe(true);
    expect(matched(rule({ match: { calledAeTitle: ['MR_AI'] } }))).toBe(false);
    // A study-level condition fails the rule whatever the series.
    expect(matched(rule({ match: { calledAeTitle: ['MR_AI'], modality: ['CT'] } }))).toBe(false);
  });

  it('series description: a case-insensitive regular expression per series', () => {
    expect(matched(rule({ match: { seriesDescription: 'lung.*axial' } }))).toBe(true);
    expect(matched(rule({ match: { seriesDescription: '^coronal' } }))).toBe(false);
  });

  it('tags: equals (one value or the whole multi-valued value), regex, present, absent', () => {
    const it8 = tag('ImageType');
    expect(matched(rule({ match: { tags: [{ ...it8, equals: 'AXIAL' }] } }))).toBe(true);
    expect(matched(rule({ match: { tags: [{ ...it8, equals: 'ORIGINAL\\PRIMARY\\AXIAL' }] } }))).toBe(true);
    expect(matched(rule({ match: { tags: [{ ...it8, equals: 'DERIVED' }] } }))).toBe(false);
    expect(matched(rule({ match: { tags: [{ ...it8, regex: '^LOCAL' }] } }))).toBe(true);
    expect(matched(rule({ match: { tags: [{ ...tag('ProtocolName'), absent: true }] } }))).toBe(true);
    expect(matched(rule({ match: { tags: [{ ...tag('ProtocolName'), present: true }] } }))).toBe(false);
    expect(matched(rule({ match: { tags: [{ ...it8, present: true }] } }))).toBe(true);
  });

  it('a tag not read for a series (no header) does not hold, and the explanation says so', () => {
    const noTags: StudyFacts = { ...study, series: [{ ...lungCt, tags: undefined as never }] };
    const e = explainRouting([rule({ match: { tags: [{ ...tag('ImageType'), present: true }] } })], 'outbox', noTags);
    expect(e.rules[0]?.matched).toBe(false);
    expect(e.rules[0]?.series[0]?.conditions[0]?.why).toMatch(/not read/);
  });

  it('series-level conditions must hold together in ONE series', () => {
    // Scout is a LOCALIZER, the lung series is AXIAL: "lung" and "LOCALIZER" never meet in one series.
    const r = rule({ match: { seriesDescription: 'lung', tags: [{ ...tag('ImageType'), equals: 'LOCALIZER' }] } });
    expect(matched(r)).toBe(false);
    const r2 = rule({ match: { seriesDescription: 'lung', tags: [{ ...tag('ImageType'), equals: 'AXIAL' }] } });
    const e = explainRouting([r2], 'outbox', study).rules[0];
    expect(e).toMatchObject({ matched: true, matchedSeries: lungCt.seriesInstanceUid });
  });

  it('an empty match matches every study, a study without series included', () => {
    expect(matched(rule({ match: {} }), { callingAeTitles: [], calledAeTitles: [], series: [] })).toBe(true);
    expect(
      matched(rule({ match: { modality: ['CT'] } }), { callingAeTitles: [], calledAeTitles: [], series: [] }),
    ).toBe(false);
  });
});

describe('routing decision and explanation', () => {
  const rules: RouteConfig[] = [
    rule({
      name: 'ignore-scouts-only',
      match: { seriesDescription: '^nothing$' },
      ignore: true,
      destinations: [],
      destination: '',
    }),
    rule({
      name: 'lung',
      match: { seriesDescription: 'lung', calledAeTitle: ['CT_AI'] },
      destinations: ['b', 'c'],
      destination: 'b',
      selection: { perSeriesSlices: 3 },
      model: 'tiny-mllama',
    }),
    rule({ name: 'all-ct', match: { modality: ['CT'] }, destinations: ['a'], destination: 'a' }),
  ];

  it('first match wins; every rule is explained, matched or not, with actual values', () => {
    const e = explainRouting(rules, 'outbox', study);
    expect(e.decision).toMatchObject({
      route: 'lung',
      ignore: false,
      destinations: ['b', 'c'],
      destination: 'b',
      selection: { perSeriesSlices: 3 },
      model: 'tiny-mllama',
    });
    expect(e.decision.why).toMatch(/rule "lung".*"Lung 1.0 Axial" matches \/lung\/i/);
    expect(e.rules.map((r) => [r.rule, r.matched])).toEqual([
      ['ignore-scouts-only', false],
      ['lung', true],
      ['all-ct', true],
    ]);
    const first = e.rules[0];
    expect(first?.series.map((s) => s.conditions[0]?.actual)).toEqual([['Topogram'], ['Lung 1.0 Axial']]);
    expect(first?.series[0]?.conditions[0]?.why).toBe('"Topogram" do not match /^nothing$/i');
    const lung = e.rules[1];
    expect(lung?.study[0]).toMatchObject({
      condition: 'calledAeTitle',
      holds: true,
      actual: ['CT_AI'],
      why: 'has CT_AI',
    });
  });

  it('an ignore rule: nothing described, no destination', () => {
    const ignore = rule({
      name: 'no-ct',
      match: { modality: ['CT'] },
      ignore: true,
      destinations: [],
      destination: '',
    });
    expect(decideRoute([ignore, ...rules], 'outbox', study)).toMatchObject({
      route: 'no-ct',
      ignore: true,
      destinations: [],
    });
  });

  it('no rule matches: the default destination, and the explanation says so', () => {
    const d = decideRoute(rules, 'outbox', { callingAeTitles: [], calledAeTitles: [], series: [] });
    expect(d).toMatchObject({ route: null, ignore: false, destinations: ['outbox'] });
    expect(d.why).toBe('no rule matched: default destination');
  });

  it('the two-list form of before issue 11 routes as before', () => {
    const old = [{ name: 'mg', match: { modality: ['MG'] }, destination: 'research' }];
    expect(routeStudy(old, 'outbox', ['CR', 'mg'])).toEqual({ destination: 'research', route: 'mg' });
    expect(routeStudy(old, 'outbox', ['CT'])).toEqual({ destination: 'outbox', route: null });
  });

  it('a regular expression sees at most MAX_REGEX_INPUT_CHARS of a value', () => {
    const long = { ...lungCt, seriesDescriptions: [`${'x'.repeat(MAX_REGEX_INPUT_CHARS)}lung`] };
    expect(matched(rule({ match: { seriesDescription: 'lung' } }), { ...study, series: [long] })).toBe(false);
  });

  it('the tester on a corpus file: header values, tags and why, as the pipeline sees them', async () => {
    const cfg = {
      routes: [
        rule({ name: 'mr', match: { modality: ['MR'], tags: [{ ...tag('ImageType'), regex: '^SECONDARY$' }] } }),
        rule({ name: 'ct', match: { modality: ['CT'], calledAeTitle: ['CT_AI'] } }),
      ],
      defaultDestination: 'outbox',
      dicomLimits: loadConfig({ env: {} }).dicomLimits,
    };
    const mr = await testRulesOnFile(cfg, path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm'));
    expect(mr.decision.route).toBe('mr');
    expect(mr.facts.series[0]?.modalities).toEqual(['MR']);
    expect(mr.rules[0]?.series[0]?.conditions[1]?.actual).toEqual(['DERIVED', 'SECONDARY', 'OTHER']);
    const ct = await testRulesOnFile(cfg, path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm'));
    expect(ct.rules[1]).toMatchObject({ matched: false, why: expect.stringMatching(/calledAeTitle: none recorded/) });
    const ctAi = await testRulesOnFile(cfg, path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm'), {
      calledAeTitle: 'CT_AI',
    });
    expect(ctAi.decision.route).toBe('ct');
  });
});

function problemsOf(overrides: Record<string, unknown>): readonly string[] {
  try {
    loadConfig({ env: {}, overrides } as LoadConfigOptions);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return [];
}

const DESTS = {
  destinations: [
    { name: 'outbox', type: 'folder', path: '/tmp/rs-o' },
    { name: 'b', type: 'folder', path: '/tmp/rs-b' },
  ],
  defaultDestination: 'outbox',
};

describe('routes[] validation', () => {
  it('accepts every condition and action, normalised', () => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        ...DESTS,
        routes: [
          {
            name: 'lung',
            match: {
              modality: ['CT'],
              sopClassUid: ['1.2.840.10008.5.1.4.1.1.2'],
              bodyPartExamined: ['CHEST'],
              callingAeTitle: ['CT1 '],
              calledAeTitle: ['CT_AI'],
              seriesDescription: 'lung',
              tags: [
                { tag: 'ImageType', equals: 'AXIAL' },
                { tag: '(0019,10A0)', present: true },
                { tag: 'ProtocolName', absent: true },
              ],
            },
            destinations: ['b', 'outbox'],
            model: 'tiny-mllama',
            selection: { perSeriesSlices: 3 },
          },
          { name: 'skip-sr', match: { modality: ['SR'] }, ignore: true },
        ],
      },
    } as LoadConfigOptions);
    expect(cfg.routes[0]).toMatchObject({
      destination: 'b',
      destinations: ['b', 'outbox'],
      match: {
        callingAeTitle: ['CT1'],
        tags: [
          { tag: '00080008', keyword: 'ImageType', equals: 'AXIAL' },
          { tag: '001910A0', keyword: '', present: true },
          { tag: '00181030', keyword: 'ProtocolName', absent: true },
        ],
      },
      selection: { perSeriesSlices: 3 },
    });
    expect(cfg.routes[1]).toMatchObject({ ignore: true, destinations: [], destination: '' });
  });

  it('reports every problem with its path', () => {
    const problems = problemsOf({
      ...DESTS,
      routes: [
        {
          name: 'bad',
          match: {
            seriesDescription: '(a+)+$',
            calledAeTitle: ['WAY_TOO_LONG_AE_TITLE'],
            tags: [{ tag: 'NoSuchKeyword', equals: 'x' }, { tag: 'ImageType' }, { tag: 'ImageType', regex: '[' }],
          },
          destinations: ['b', 'nowhere'],
          model: 'other-model',
          selection: { perSeriesSlices: 0 },
        },
        { name: 'ign', match: {}, ignore: true, destination: 'b' },
        { name: 'none', match: {} },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'routes[0].match.seriesDescription: nested quantifiers (e.g. (a+)+) can backtrack catastrophically; rewrite without them',
        expect.stringMatching(/^routes\[0\]\.match\.calledAeTitle\[0\]: not a valid AE title/),
        'routes[0].match.tags[0].tag: "NoSuchKeyword" is neither a DICOM keyword nor (gggg,eeee)',
        'routes[0].match.tags[1]: give exactly one of equals, regex, present, absent',
        expect.stringMatching(/^routes\[0\]\.match\.tags\[2\]\.regex: not a valid regular expression/),
        'routes[0].destinations[1]: unknown destination "nowhere"',
        'routes[0].model: unknown model "other-model" (the configured bundle is "tiny-mllama")',
        'routes[0].selection.perSeriesSlices: must be an integer from 1 to 64',
        'routes[1]: an ignore rule sends nothing: leave destination(s) out',
        'routes[2].destinations: is required (or ignore: true)',
      ]),
    );
  });

  it('caps pattern length', () => {
    expect(regexProblem('a'.repeat(MAX_REGEX_PATTERN_CHARS))).toBeUndefined();
    expect(regexProblem('a'.repeat(MAX_REGEX_PATTERN_CHARS + 1))).toMatch(/longer than/);
    expect(regexProblem('(\\d*)*')).toMatch(/nested quantifiers/);
    expect(regexProblem('(ab)+|lung{2,3}')).toBeUndefined();
  });

  it('completeness: sources and expect rules validated, names unique', () => {
    const problems = problemsOf({
      ...DESTS,
      completeness: {
        sources: [{ name: 'x', match: { via: ['fax'], remoteNode: ['nope'] }, studyWindowMs: -1 }],
        expect: [{ name: 'x', seriesDescriptions: ['(x+)*'] }, { name: 'y' }],
      },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^completeness\.sources\[0\]\.match\.via: must be among/),
        'completeness.sources[0].match.remoteNode: unknown remote node "nope"',
        'completeness.sources[0].studyWindowMs: must be an integer from 0 to 86400000',
        expect.stringMatching(/^completeness\.expect\[0\]\.seriesDescriptions\[0\]: nested quantifiers/),
        'completeness.expect[1]: give at least one of seriesCount, seriesDescriptions, modalities',
        'completeness: duplicate name "x"',
      ]),
    );
  });
});

describe('completeness judgement', () => {
  const none: CompletenessConfig = { defaultSeriesWindowMs: DEFAULT_SERIES_WINDOW_MS, sources: [], expect: [] };
  const g = (s: string, idleMs: number, more: Partial<SeriesActivity> = {}): SeriesActivity => ({
    seriesInstanceUid: s,
    via: 'stow-rs',
    calledAeTitle: null,
    actor: 'u',
    modalities: ['CT'],
    descriptions: [],
    idleMs,
    ...more,
  });

  it('one window: the study idle for it, and each series for its series window', () => {
    const p = { stabilityWindowMs: 1000, completeness: { ...none, defaultSeriesWindowMs: 100 } };
    expect(judgeCompleteness(p, 999, [g('a', 999)]).complete).toBe(false);
    expect(judgeCompleteness(p, 1000, [g('a', 1000)])).toMatchObject({ complete: true, reason: 'window-elapsed' });
    // A series window longer than the study window is waited for too.
    const slow = { stabilityWindowMs: 100, completeness: { ...none, defaultSeriesWindowMs: 5000 } };
    expect(judgeCompleteness(slow, 200, [g('a', 200)]).complete).toBe(false);
  });

  it('per source: the first source that matches a group; a study from two sources waits for the longest', () => {
    const p = {
      stabilityWindowMs: 60_000,
      completeness: {
        ...none,
        sources: [
          { name: 'ct-ai', match: { calledAeTitle: ['CT_AI'] }, studyWindowMs: 500, seriesWindowMs: 100 },
          {
            name: 'pacs',
            match: { via: ['wado-rs' as const], remoteNode: ['pacs'] },
            studyWindowMs: 2000,
            seriesWindowMs: 100,
          },
        ],
      },
    };
    const ctAi = g('a', 600, { calledAeTitle: 'CT_AI' });
    expect(judgeCompleteness(p, 600, [ctAi])).toMatchObject({ complete: true, sources: ['ct-ai'], studyWindowMs: 500 });
    // Same series, also retrieved from the PACS: 2000 ms.
    const fromPacs = g('a', 600, { via: 'wado-rs', actor: 'pacs' });
    expect(judgeCompleteness(p, 600, [ctAi, fromPacs])).toMatchObject({ complete: false, studyWindowMs: 2000 });
    // No source matches: the global window.
    expect(judgeCompleteness(p, 600, [g('a', 600)])).toMatchObject({ complete: false, studyWindowMs: 60_000 });
  });

  it('expected series: met once every series is idle for its series window, before the study window', () => {
    const p = {
      stabilityWindowMs: 60_000,
      completeness: {
        ...none,
        defaultSeriesWindowMs: 300,
        expect: [
          {
            name: 'chest',
            match: { modality: ['CT'] },
            seriesCount: 2,
            seriesDescriptions: ['lung'],
            modalities: ['CT'],
          },
        ],
      },
    };
    const two = [g('a', 400, { descriptions: ['Topogram'] }), g('b', 400, { descriptions: ['Lung axial'] })];
    expect(judgeCompleteness(p, 400, two)).toMatchObject({ complete: true, reason: 'expected-series', rule: 'chest' });
    // A series still arriving (idle 100 < 300): not yet.
    expect(
      judgeCompleteness(p, 100, [two[0] as SeriesActivity, g('b', 100, { descriptions: ['Lung'] })]).complete,
    ).toBe(false);
    // One series only, or no lung description, or another modality: not met.
    expect(judgeCompleteness(p, 400, [two[1] as SeriesActivity]).complete).toBe(false);
    expect(judgeCompleteness(p, 400, [g('a', 400), g('b', 400)]).complete).toBe(false);
    expect(
      judgeCompleteness(p, 400, [
        g('a', 400, { modalities: ['MR'], descriptions: ['lung'] }),
        g('b', 400, { modalities: ['MR'] }),
      ]).complete,
    ).toBe(false);
  });

  it('the sweep scans from the shortest window any rule could complete a study after', () => {
    const p = {
      stabilityWindowMs: 60_000,
      completeness: {
        ...none,
        defaultSeriesWindowMs: 700,
        sources: [{ name: 's', match: {}, studyWindowMs: 5000, seriesWindowMs: 900 }],
      },
    };
    expect(shortestWindowMs(p)).toBe(5000);
    expect(
      shortestWindowMs({
        ...p,
        completeness: { ...p.completeness, expect: [{ name: 'e', match: {}, seriesCount: 1 }] },
      }),
    ).toBe(700);
  });
});
