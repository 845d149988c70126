import type { RadScribeConfig } from './config.js';
import { ConfigError } from './errors.js';
import type { DicomwebAuth } from './pacs/dicomweb-client.js';

/**
 * Secrets come only from the environment (STYLE §2.5): the configuration names the variables
 * (`passwordEnv`, `tokenEnv`), this module reads them, once, at start-up. A variable that is named
 * but unset or empty is a configuration error reported with its dotted path, all of them at once,
 * so a node never authenticates with an empty password. Values never appear in messages or logs.
 */

export type Environment = Readonly<Record<string, string | undefined>>;

/** Credentials of each remote node by name (undefined: the node needs none). */
export function resolveRemoteNodeAuth(
  config: Pick<RadScribeConfig, 'remoteNodes'>,
  env: Environment = process.env,
): ReadonlyMap<string, DicomwebAuth | undefined> {
  const problems: string[] = [];
  const out = new Map<string, DicomwebAuth | undefined>();
  const read = (path: string, name: string | undefined): string => {
    if (!name) {
      problems.push(`${path}: must name the environment variable that holds the secret`);
      return '';
    }
    const v = env[name];
    if (v === undefined) problems.push(`${path}: environment variable ${name} is not set`);
    else if (v === '') problems.push(`${path}: environment variable ${name} is empty`);
    return v ?? '';
  };
  config.remoteNodes.forEach((n, i) => {
    const p = `remoteNodes[${i}].auth`;
    if (n.auth.type === 'basic')
      out.set(n.name, {
        type: 'basic',
        username: n.auth.username ?? '',
        password: read(`${p}.passwordEnv`, n.auth.passwordEnv),
      });
    else if (n.auth.type === 'bearer')
      out.set(n.name, { type: 'bearer', token: read(`${p}.tokenEnv`, n.auth.tokenEnv) });
    else out.set(n.name, undefined);
  });
  if (problems.length > 0) throw new ConfigError(problems);
  return out;
}
