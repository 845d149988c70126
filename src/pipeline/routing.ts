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
  return routeStudy(routes, defaultDestination, studyModalities).destination;
}

/** Which destination, and the name of the route that chose it (null: no route matched, the default). */
export interface RoutingDecision {
  readonly destination: string;
  readonly route: string | null;
}

export function routeStudy(
  routes: readonly RouteConfig[],
  defaultDestination: string,
  studyModalities: readonly string[],
): RoutingDecision {
  const mods = new Set(studyModalities.map((m) => m.toUpperCase()));
  for (const r of routes) {
    const want = r.match.modality;
    if (!want || want.some((m) => mods.has(m.toUpperCase()))) return { destination: r.destination, route: r.name };
  }
  return { destination: defaultDestination, route: null };
}
