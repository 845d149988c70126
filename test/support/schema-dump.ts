import { spawnSync } from 'node:child_process';

/**
 * `pg_dump --schema-only` of one schema, normalised so that it does not depend on the schema's
 * name, the dump tool's version banner or ownership (graphile-worker keeps such a dump committed
 * and diffs it in CI, STYLE §2.3: a migration that changes the schema unexpectedly shows up here).
 */
export function dumpSchema(url: string, schema: string): string {
  const r = spawnSync(
    'pg_dump',
    ['--schema-only', '--no-owner', '--no-privileges', `--schema=${schema}`, `--dbname=${url}`],
    {
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
  // A SECURITY DEFINER function's pinned search_path (migration 0021) names the schema too.
  return r.stdout
    .split('\n')
    .filter((l) => !l.startsWith('--') && !l.startsWith('SET ') && !/^SELECT pg_catalog\.set_config/.test(l))
    .filter((l) => !/^CREATE SCHEMA /.test(l) && !/^\\(un)?restrict /.test(l))
    .join('\n')
    .replaceAll(`${schema}.`, 'radscribe.')
    .replaceAll(`search_path TO '${schema}'`, `search_path TO 'radscribe'`)
    .replace(/\n{3,}/g, '\n\n')
    .trim()
    .concat('\n');
}
