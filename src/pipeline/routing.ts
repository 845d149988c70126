import type { RouteConfig } from '../config.js';
import { normalizeAeTitle } from '../dimse/ae-title.js';

/**
 * Routing rules: the first route whose match holds for the study decides the SR destination
 * (mercure-style ordered rules). A route with an empty match matches every study.
 */
export function chooseDestination(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
): string {
  return routeStudy(routes, defaultDestination, studyModalities).destination;
}

/** Which destination, and the name of the route that chose it (null: no route matched, the default). */
export interface RoutingDecision {
  readonly destination: string;
  readonly route: string | null;
}

/**
 * `studyCalledAeTitles`: the local AEs the study's instances were sent to (C-STORE Called AE Title,
 * or the {AET} of STOW-RS /dicomweb/aets/{AET}/studies), so a route chosen by AE works alike for
 * both protocols. AE titles compare case-sensitively, spaces at the ends ignored (PS3.5 AE VR).
 */
export function routeStudy(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
  studyCalledAeTitles: readonly string[] = [],
): RoutingDecision {
  const mods = new Set(studyModalities.map((m) => m.toUpperCase()));
  const called = new Set(studyCalledAeTitles.map(normalizeAeTitle));
  for (const r of routes) {
    const wantMods = r.match.modality;
    const wantAes = r.match.calledAeTitle;
    if (wantMods && !wantMods.some((m) => mods.has(m.toUpperCase()))) continue;
    if (wantAes && !wantAes.some((a) => called.has(normalizeAeTitle(a)))) continue;
    return { destination: r.destination, route: r.name };
  }
  return { destination: defaultDestination, route: null };
}
