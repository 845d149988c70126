import type { Validator } from '../config.js';
import { hostPatternProblem, uidProblem } from '../dimse/association-policy.js';
import type { DimseListenerConfig } from '../dimse/storage-scp.js';

type ListenerPolicy = Pick<DimseListenerConfig, 'allowedHosts' | 'allowedSopClasses' | 'route'>;

/**
 * The association policy keys of one `dimse.listeners[]` item (issue 11): `allowedHosts` (IP
 * addresses or CIDR blocks; names are not resolved, so a DNS change cannot open the AE),
 * `allowedSopClasses` (SOP Class UIDs, PS3.5 §9.1) and `route` (a routes[].name, checked against
 * the routes by validateConfig). Absent list = any; an empty list is a problem (it would shut the
 * AE; leave the key out for any).
 */
export function validateListenerPolicy(v: Validator, o2: Parameters<Validator['has']>[0], p: string): ListenerPolicy {
  const list = (k: string, problem: (s: string) => string | undefined, what: string): string[] | undefined => {
    if (!v.has(o2, k)) return undefined;
    const xs = v.strArr(o2, k, p);
    if (xs.length === 0) v.problem(`${p}.${k}`, 'must list at least one (leave the key out for any)');
    xs.forEach((x, i) => {
      const why = problem(x);
      if (why) v.problem(`${p}.${k}[${i}]`, `not ${what}: ${why}`);
    });
    return xs;
  };
  const allowedHosts = list('allowedHosts', hostPatternProblem, 'an IP address or CIDR block');
  const allowedSopClasses = list('allowedSopClasses', uidProblem, 'a UID');
  const route = v.has(o2, 'route') ? v.str(o2, 'route', p) : undefined;
  return {
    ...(allowedHosts ? { allowedHosts } : {}),
    ...(allowedSopClasses ? { allowedSopClasses } : {}),
    ...(route === undefined ? {} : { route }),
  };
}
