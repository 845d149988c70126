import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { AuditEventKind } from '../../../src/audit/audit-codes.js';
import { RemoteStudyState } from '../../../src/ingest/remote-study-tracker.js';
import { StudyState } from '../../../src/ingest/study-lifecycle.js';
import { ReceivedVia } from '../../../src/ingest/types.js';
import { JobKind, JobState } from '../../../src/jobs/types.js';
import { MIGRATIONS_DIR } from '../../../src/runtime-paths.js';

/** STYLE §2.7: every state column's CHECK list equals its `as const` object. */
const sql = readdirSync(MIGRATIONS_DIR)
  .filter((f) => f.endsWith('.sql'))
  .sort()
  .map((f) => readFileSync(path.join(MIGRATIONS_DIR, f), 'utf8'))
  .join('\n');

/** The latest definition wins: a later `ALTER TABLE … ADD CONSTRAINT … CHECK` replaces the CREATE TABLE one. */
function checkValues(table: string, column: string): string[] {
  const altered = sql.lastIndexOf(`ALTER TABLE ${table} ADD CONSTRAINT ${table}_${column}_check`);
  const body = sql.slice(altered >= 0 ? altered : sql.indexOf(`CREATE TABLE ${table} (`));
  const m = new RegExp(`CHECK \\(${column} IN \\(([^)]*)\\)\\)`).exec(body);
  if (!m?.[1]) throw new Error(`no CHECK on ${table}.${column}`);
  return [...m[1].matchAll(/'([^']+)'/g)].map((x) => x[1] as string).sort();
}

const values = (o: Record<string, string>): string[] => Object.values(o).sort();

describe('schema CHECK constraints match the TypeScript closed sets', () => {
  it.each([
    ['studies', 'state', values(StudyState)],
    ['instances', 'received_via', values(ReceivedVia)],
    ['jobs', 'kind', values(JobKind)],
    ['jobs', 'state', values(JobState)],
    ['remote_studies', 'state', values(RemoteStudyState)],
    ['audit_events', 'kind', values(AuditEventKind)],
  ])('%s.%s', (table, column, expected) => {
    expect(checkValues(table, column)).toEqual(expected);
  });
});
