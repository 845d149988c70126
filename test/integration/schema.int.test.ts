import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { backendName, testDatabase } from '../support/db.js';
import { dumpSchema } from '../support/schema-dump.js';

/**
 * The schema the migrations produce equals the committed test/fixtures/schema.sql.
 * After an intended schema change run `RADSCRIBE_UPDATE_SCHEMA=1 npm test -- schema` and commit the file.
 */
const SCHEMA_FILE = path.join(__dirname, '../fixtures/schema.sql');
const haveDump = spawnSync('pg_dump', ['--version']).status === 0;
const runIt = backendName() === 'postgresql' && haveDump ? it : it.skip;

describe('committed schema dump', () => {
  runIt('migrations produce exactly test/fixtures/schema.sql', async () => {
    const db = await testDatabase();
    try {
      const actual = dumpSchema(process.env.DATABASE_URL as string, db.where);
      if (process.env.RADSCRIBE_UPDATE_SCHEMA === '1') writeFileSync(SCHEMA_FILE, actual);
      expect(actual).toBe(readFileSync(SCHEMA_FILE, 'utf8'));
      expect(actual).toContain('CREATE TABLE radscribe.audit_events');
    } finally {
      await db.close();
    }
  });
});
