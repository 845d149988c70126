import { referencedTags } from '../config/routing-rules.js';
import type { RadScribeConfig } from '../config.js';
import { readHeaderTags } from '../ingest/header-tags.js';
import type { StoredInstance } from '../ingest/types.js';
import { explainRouting, type RoutingExplanation, type StudyFacts } from './routing.js';
import { fileFactsOf, studyFactsOf } from './routing-facts.js';

/**
 * The rule tester (issue 11: "which rules match this study, and why"), shared by `radscribe rules
 * test` and POST /api/v1/rules/test: the same facts and the same evaluation the describe job uses
 * (routing-facts.ts, routing.ts), for a study already received or for one DICOM file.
 */

export const RuleTestSource = { Study: 'study', File: 'file' } as const;
export type RuleTestSource = (typeof RuleTestSource)[keyof typeof RuleTestSource];

export interface RuleTestReport extends RoutingExplanation {
  readonly source: RuleTestSource;
  readonly studyInstanceUid: string;
  /** What the rules were evaluated against. */
  readonly facts: StudyFacts;
}

type RulesConfig = Pick<RadScribeConfig, 'routes' | 'defaultDestination' | 'dicomLimits'>;

/** A stored study; null when no live instance of it is held. */
export async function testRulesOnStudy(
  cfg: RulesConfig,
  listInstances: (uid: string) => Promise<readonly StoredInstance[]>,
  studyInstanceUid: string,
): Promise<RuleTestReport | null> {
  const instances = await listInstances(studyInstanceUid);
  if (instances.length === 0) return null;
  const facts = await studyFactsOf(
    instances,
    referencedTags(cfg.routes),
    async (inst, tags) => (await readHeaderTags(inst.filePath, tags, { limits: cfg.dicomLimits })).tags,
  );
  return {
    source: RuleTestSource.Study,
    studyInstanceUid,
    facts,
    ...explainRouting(cfg.routes, cfg.defaultDestination, facts),
  };
}

/**
 * One Part 10 file, as if it were a study of one series. A file carries no association, so the
 * calling and called AE are what the caller says (none: AE conditions do not hold). Throws
 * dicom-invalid / dicom-hostile as the header reader does.
 */
export async function testRulesOnFile(
  cfg: RulesConfig,
  filePath: string,
  ae: { readonly callingAeTitle?: string; readonly calledAeTitle?: string } = {},
): Promise<RuleTestReport> {
  const h = await readHeaderTags(filePath, referencedTags(cfg.routes), { limits: cfg.dicomLimits });
  const facts = fileFactsOf(h.header, h.identity.studyInstanceUid, h.tags, ae);
  return {
    source: RuleTestSource.File,
    studyInstanceUid: h.identity.studyInstanceUid,
    facts,
    ...explainRouting(cfg.routes, cfg.defaultDestination, facts),
  };
}

const mark = (holds: boolean): string => (holds ? 'yes' : 'no ');

/** The report as text: every rule, matched or not, and for each condition what was there and why. */
export function renderRuleTest(r: RuleTestReport): string {
  const out: string[] = [];
  out.push(`${r.source} ${r.studyInstanceUid}: ${r.facts.series.length} series`);
  out.push(
    `  calling AE: ${r.facts.callingAeTitles.join(', ') || '-'}   called AE: ${r.facts.calledAeTitles.join(', ') || '-'}`,
  );
  for (const s of r.facts.series)
    out.push(
      `  series ${s.seriesInstanceUid}: modality ${s.modalities.join(',') || '-'}, body part ${s.bodyPartsExamined.join(',') || '-'}, description ${s.seriesDescriptions.map((d) => JSON.stringify(d)).join(',') || '-'}`,
    );
  if (r.rules.length === 0) out.push('no routing rules configured');
  for (const [i, e] of r.rules.entries()) {
    out.push(`rule ${i + 1} "${e.rule}": ${e.matched ? 'MATCHES' : 'does not match'} (${e.why})`);
    for (const c of e.study) out.push(`  [${mark(c.holds)}] ${c.condition}: ${c.why}`);
    for (const s of e.series) {
      out.push(`  series ${s.seriesInstanceUid}: ${s.holds ? 'all conditions hold' : 'not all conditions hold'}`);
      for (const c of s.conditions) out.push(`    [${mark(c.holds)}] ${c.condition}: ${c.why}`);
    }
  }
  const d = r.decision;
  out.push(
    d.ignore
      ? `decision: ignored by rule "${d.route}" (not described)`
      : `decision: ${d.route === null ? 'default route' : `rule "${d.route}"`} → ${d.destinations.join(', ')}${d.selection ? `, frame policy ${JSON.stringify(d.selection)}` : ''}${d.model ? `, model ${d.model}` : ''}`,
  );
  return `${out.join('\n')}\n`;
}
