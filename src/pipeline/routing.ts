import type { RouteConfig } from '../config.js';

/**
 * Routing rules: the first route whose match holds for the study decides the SR destination
 * (mercure-style ordered rules). A route with an empty match matches every study.
 */
export function chooseDestination(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
): string {
  const mods = new Set(studyModalities.map((m) => m.toUpperCase()));
  for (const r of routes) {
    const want = r.match.modality;
    if (!want || want.some((m) => mods.has(m.toUpperCase()))) return r.destination;
  }
  return defaultDestination;
}
