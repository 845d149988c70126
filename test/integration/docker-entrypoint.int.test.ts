import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { freePort } from '../../bench/support/free-port.js';

/**
 * [REQ-DEP-02] docker/entrypoint.sh run outside Docker (RADSCRIBE_HOME = this checkout, compiled
 * dist/): it refuses a bad environment naming every problem, and with a good one migrates, serves
 * /health, and on SIGTERM the gateway (exec'd, so the signal reaches it) stops cleanly with an
 * audited application-stop. PostgreSQL only (DATABASE_URL); the tiny random-weight test fixture model.
 */
const ROOT = path.resolve(__dirname, '../..');
const ENTRY = path.join(ROOT, 'docker/entrypoint.sh');
const URL = process.env.DATABASE_URL;

describe('docker/entrypoint.sh outside Docker', () => {
  it('[REQ-DEP-02] refuses a bad environment and names every problem (exit 64)', () => {
    const r = spawnSync(ENTRY, ['serve'], {
      env: {
        PATH: process.env.PATH,
        RADSCRIBE_HOME: ROOT,
        RADSCRIBE_CONFIG: '/nonexistent.yaml',
        DATABASE_URL: 'mysql://x',
      },
      encoding: 'utf8',
    });
    expect(r.status).toBe(64);
    expect(r.stderr).toMatch(/RADSCRIBE_CONFIG=\/nonexistent.yaml is not a readable file/);
    expect(r.stderr).toMatch(/DATABASE_URL must start with postgresql:\/\/ \(got scheme 'mysql'\)/);
    expect(r.stderr).toMatch(/2 problem\(s\); not starting/);
  });

  (URL ? it : it.skip)(
    '[REQ-DEP-02] migrates, serves /health, stops on SIGTERM with application-stop audited',
    async () => {
      const dir = mkdtempSync(path.join(tmpdir(), 'rs-entry-'));
      const port = await freePort();
      const config = path.join(dir, 'radscribe.yaml');
      writeFileSync(config, `dataDir: ${dir}\nhttp:\n  host: 127.0.0.1\n  port: ${port}\n`);
      const urlFile = path.join(dir, 'database-url');
      writeFileSync(urlFile, `${URL}\n`);
      const env = Object.fromEntries(
        Object.entries(process.env).filter(([k]) => !k.startsWith('RADSCRIBE_') && k !== 'DATABASE_URL'),
      );
      const child = spawn(ENTRY, [], {
        env: {
          ...env,
          RADSCRIBE_HOME: ROOT,
          RADSCRIBE_CONFIG: config,
          RADSCRIBE_DATA_DIR: dir,
          DATABASE_URL_FILE: urlFile,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let err = '';
      child.stderr.on('data', (b: Buffer) => {
        err = (err + b.toString()).slice(-8000);
      });
      const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      try {
        let health = 0;
        for (let i = 0; i < 600 && health !== 200 && child.exitCode === null; i++) {
          health = await fetch(`http://127.0.0.1:${port}/health`).then(
            (r) => r.status,
            () => 0,
          );
          if (health !== 200) await new Promise((r) => setTimeout(r, 200));
        }
        expect({ health, err: health === 200 ? '' : err }).toEqual({ health: 200, err: '' });
        const since = new Date();
        child.kill('SIGTERM');
        expect(await exited).toBe(0);
        const c = new pg.Client({ connectionString: URL });
        await c.connect();
        try {
          const { rows } = await c.query(
            `SELECT count(*)::int AS n FROM audit_events WHERE kind = 'application-stop' AND occurred_at >= $1`,
            [since],
          );
          expect(rows[0].n).toBe(1);
        } finally {
          await c.end();
        }
      } finally {
        if (child.exitCode === null) child.kill('SIGKILL');
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});
