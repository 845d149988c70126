import { existsSync } from 'node:fs';
import path from 'node:path';
import { migrationTables, REPO_ROOT, readSource, sqlWrites, stripComments, tsFilesUnder } from './source-scan.js';

/**
 * Issue 8: one lifecycle owner per table. Every SQL statement under src/ that changes a table's rows
 * or shape (INSERT INTO, UPDATE, DELETE FROM, TRUNCATE, MERGE INTO, CREATE/ALTER/DROP TABLE) is in
 * that table's owner module; everyone else calls the owner's functions, passing a client to join a
 * transaction. Migrations are exempt: they are the schema's history, not a writer at run time.
 * The owners are listed in docs/ARCHITECTURE.md.
 */
const OWNERS: Readonly<Record<string, readonly string[]>> = {
  // The study lifecycle and its transition table (the trigger in migrations/0005 enforces it).
  studies: ['src/ingest/study-lifecycle.ts'],
  // Written by the migration alone: the lifecycle is changed by a new migration, never at run time.
  study_state_transitions: [],
  instances: ['src/ingest/instance-repository.ts'],
  // Written by migration 0015 alone, as study_state_transitions.
  job_state_transitions: [],
  // job-queue.ts runs the statements; queries.ts holds their text (STYLE §2.2: per folder, queries.ts holds SQL).
  jobs: ['src/jobs/job-queue.ts', 'src/jobs/queries.ts'],
  audit_events: ['src/audit/audit-log.ts'],
  // The ATNA export cursor (migration 0012): advanced by the exporter alone.
  audit_export_cursor: ['src/audit/atna/audit-exporter.ts'],
  // Audit retention's lane bases (migration 0021): written by audit_retention_drop() in the migration alone.
  audit_lane_base: [],
  remote_studies: ['src/ingest/remote-study-tracker.ts'],
  qido_poll_marks: ['src/pacs/qido-poll-state.ts'],
  // Local AEs and remote nodes (migration 0022): the YAML seed and the admin API both go through the store.
  local_aes: ['src/config/ae-store.ts'],
  remote_nodes: ['src/config/ae-store.ts'],
  ae_config_generation: ['src/config/ae-store.ts'],
  sr_exports: ['src/export/sr-export-ledger.ts'],
  schema_migrations: ['src/db/migrate.ts'],
  api_tokens: ['src/http/auth/api-tokens.ts'],
};

const TABLES = new Set(migrationTables());
const SOURCES = tsFilesUnder('src');

describe('table ownership: only the owner module writes a table', () => {
  it('every table the migrations create has exactly one owner entry', () => {
    const unowned = [...TABLES].filter((t) => !(t in OWNERS));
    const unknown = Object.keys(OWNERS).filter((t) => !TABLES.has(t));
    expect({ unowned, unknown }).toEqual({ unowned: [], unknown: [] });
  });

  it('owner modules exist', () => {
    const missing = Object.values(OWNERS)
      .flat()
      .filter((f) => !existsSync(path.join(REPO_ROOT, f)));
    expect(missing).toEqual([]);
  });

  it('no module other than its owner writes a table (SQL text in src/**/*.ts)', () => {
    const offenders: string[] = [];
    for (const file of SOURCES) {
      for (const w of sqlWrites(readSource(file), TABLES)) {
        const owners = OWNERS[w.table] ?? [];
        if (!owners.includes(file)) {
          offenders.push(
            `${file}:${w.line} ${w.verb} ${w.table} — owner: ${owners.length ? owners.join(', ') : 'migrations only'}`,
          );
        }
      }
    }
    if (offenders.length > 0) {
      throw new Error(
        `Only a table's owner module may change it (issue 8: one lifecycle owner per table). ` +
          `Call the owner's function (it takes a Queryable, so it joins your transaction) instead of:\n  ${offenders.join('\n  ')}`,
      );
    }
  });

  it("an owner's write statements are used by the owner module only", () => {
    // `export const NAME = \`…\`` constants in owner files whose text writes the owned table.
    const writers = new Map<string, { file: string; table: string }>();
    for (const [table, files] of Object.entries(OWNERS)) {
      for (const file of files.filter((f) => existsSync(path.join(REPO_ROOT, f)))) {
        const text = stripComments(readSource(file));
        for (const m of text.matchAll(/export\s+const\s+([A-Z][A-Z0-9_]*)\s*=\s*(`[^`]*`|'[^']*'|"[^"]*")/g)) {
          if (sqlWrites(m[2] as string, new Set([table])).length > 0) writers.set(m[1] as string, { file, table });
        }
      }
    }
    expect(writers.size).toBeGreaterThan(0);
    const offenders: string[] = [];
    for (const file of SOURCES) {
      const text = stripComments(readSource(file));
      for (const [name, w] of writers) {
        if ((OWNERS[w.table] ?? []).includes(file)) continue;
        if (new RegExp(`\\b${name}\\b`).test(text))
          offenders.push(`${file} uses ${name} (${w.table}, owner ${w.file})`);
      }
    }
    if (offenders.length > 0) {
      throw new Error(`Write statements are the owner's own; call its function instead:\n  ${offenders.join('\n  ')}`);
    }
  });
});

describe('the SQL write scanner', () => {
  const tables = new Set(['studies', 'jobs', 'audit_events']);
  it('finds each kind of write, case-insensitively, with its line', () => {
    const src = [
      'const A = `INSERT INTO studies (study_instance_uid) VALUES ($1)`;',
      "const B = 'update jobs set state = $2';",
      'const C = `',
      '  DELETE FROM audit_events WHERE id = $1`;',
      "const D = 'TRUNCATE TABLE jobs';",
      "const E = 'UPDATE radscribe.studies s SET state = $1';",
      "const F = 'ALTER TABLE studies ADD COLUMN x int';",
    ].join('\n');
    expect(sqlWrites(src, tables)).toEqual([
      { verb: 'INSERT INTO', table: 'studies', line: 1 },
      { verb: 'UPDATE', table: 'jobs', line: 2 },
      { verb: 'DELETE FROM', table: 'audit_events', line: 4 },
      { verb: 'TRUNCATE TABLE', table: 'jobs', line: 5 },
      { verb: 'UPDATE', table: 'studies', line: 6 },
      { verb: 'ALTER TABLE', table: 'studies', line: 7 },
    ]);
  });

  it('ignores comments, reads, row locks and upsert clauses', () => {
    const src = [
      '// UPDATE studies SET state = $1 (a comment)',
      '/* INSERT INTO jobs … */',
      "const A = 'SELECT * FROM studies FOR UPDATE OF studies';",
      "const B = 'INSERT INTO other_table (x) VALUES (1) ON CONFLICT (x) DO UPDATE SET x = 2';",
      "log.info('update the cache');",
    ].join('\n');
    expect(sqlWrites(src, tables)).toEqual([]);
  });
});
