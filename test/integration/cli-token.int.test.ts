import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db/pool.js';
import { resolveApiToken } from '../../src/http/auth/api-tokens.js';

/**
 * `radscribe token create|list|revoke` (issue 12, Access) from the checkout's executable on an
 * embedded PostgreSQL: the secret is printed once, stored only as its hash, listed never; a
 * revoked token no longer resolves; both changes are audited (security-configuration, DCM 110113).
 */
const BIN = path.join(__dirname, '../../bin/radscribe');

function run(args: string[], env: Record<string, string>) {
  const { DATABASE_URL: _omit, ...rest } = process.env;
  return spawnSync(BIN, args, { env: { ...rest, ...env }, encoding: 'utf8', timeout: 90_000 });
}

describe('radscribe token', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'rs-token-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('creates (secret once), lists (no secret), revokes; each change audited', async () => {
    const env = { RADSCRIBE_DATA_DIR: dataDir };
    const created = run(['token', 'create', '--name', 'CT 3', '--role', 'ingest', '--expires', '30d'], env);
    expect(created.stderr).not.toMatch(/radscribe: /);
    expect(created.status).toBe(0);
    const secret = /^(rsk_[A-Za-z0-9_-]{43})$/m.exec(created.stdout)?.[1] as string;
    expect(secret).toBeDefined();
    const id = /^token (\d+) "CT 3" role=ingest expires=/m.exec(created.stdout)?.[1] as string;
    expect(id).toBeDefined();

    const list = run(['token', 'list', '--json'], env);
    expect(list.status).toBe(0);
    expect(list.stdout).not.toContain(secret);
    const rows = JSON.parse(list.stdout) as { id: string; role: string; state: string; expiresAt: string }[];
    expect(rows.map((r) => [r.id, r.role, r.state])).toEqual([[id, 'ingest', 'active']]);
    const days = (new Date(rows[0]?.expiresAt as string).getTime() - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29.9);
    expect(days).toBeLessThan(30.1);

    const revoked = run(['token', 'revoke', id], env);
    expect(revoked.status).toBe(0);
    expect(run(['token', 'revoke', '999'], env).status).toBe(1);
    expect(JSON.parse(run(['token', 'list', '--json'], env).stdout)[0].state).toBe('revoked');

    const db = await openDatabase({ dataDir, poolSize: 1 });
    try {
      await expect(resolveApiToken(db.pool, secret)).rejects.toMatchObject({ reason: 'revoked', tokenId: id });
      const { rows: ev } = await db.pool.query<{ actor: string; detail: Record<string, unknown> }>(
        "SELECT actor, detail FROM audit_events WHERE kind = 'security-configuration' ORDER BY id",
      );
      expect(ev.map((e) => [e.detail.action, e.detail.tokenId, e.detail.via])).toEqual([
        ['token-created', id, 'cli'],
        ['token-revoked', id, 'cli'],
      ]);
      expect(ev[0]?.actor).toMatch(/^cli:/);
      const all = await db.pool.query<{ t: string }>(
        "SELECT string_agg(row_to_json(a)::text, '') AS t FROM audit_events a",
      );
      expect(all.rows[0]?.t).not.toContain(secret);
    } finally {
      await db.close();
    }
  });

  it('refuses an unknown role or a bad expiry with the usage exit code', () => {
    const env = { RADSCRIBE_DATA_DIR: dataDir };
    const bad = run(['token', 'create', '--name', 'x', '--role', 'root'], env);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain('--role must be one of admin, operator, auditor, ingest');
    expect(run(['token', 'create', '--name', 'x', '--role', 'auditor', '--expires', 'soon'], env).status).toBe(2);
  });
});
