import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../src/db/pool.js';
import { Gateway } from '../../src/gateway.js';
import { testGatewaySetup } from '../support/gateway.js';

jest.setTimeout(300_000);

const BIN = path.join(__dirname, '../../bin/radscribe');

/**
 * [REQ-AUD-05] (issue 12 "Tamper evidence", issue 15) The whole path an operator takes, on the
 * embedded database: `radscribe audit keygen`, a gateway with audit.anchor configured that anchors
 * at start and at shutdown, `radscribe audit verify --anchors` passing, then the trail's last rows
 * deleted by a superuser and the same command failing with what it found; `radscribe audit query`.
 */
describe('audit anchors end to end (bin/radscribe, embedded database)', () => {
  const keyDir = mkdtempSync(path.join(tmpdir(), 'rs-keys-'));
  const priv = path.join(keyDir, 'anchor.key');
  const pub = path.join(keyDir, 'anchor.pub');
  afterAll(() => rmSync(keyDir, { recursive: true, force: true }));

  function run(args: string[], dataDir: string) {
    const { DATABASE_URL: _omit, ...rest } = process.env;
    return spawnSync(BIN, args, {
      env: { ...rest, RADSCRIBE_DATA_DIR: dataDir },
      encoding: 'utf8',
      timeout: 120_000,
    });
  }

  it('keygen, anchored start and stop, verify, tamper, verify again, query', async () => {
    const anchors = path.join(keyDir, 'anchors');
    const setup = await testGatewaySetup('pglite', {
      audit: { anchor: { directory: anchors, intervalSeconds: 3600, privateKeyFile: priv, publicKeyFile: pub } },
    });
    try {
      const kg = run(['audit', 'keygen', '--private-key', priv, '--public-key', pub], setup.dataDir);
      expect(kg.stderr).toBe('');
      expect(kg.status).toBe(0);
      expect(statSync(priv).mode & 0o777).toBe(0o600);
      expect(run(['audit', 'keygen', '--private-key', priv, '--public-key', pub], setup.dataDir).status).toBe(1);

      const gw = await Gateway.start(setup.config, { actor: 'test' });
      expect(readdirSync(anchors).filter((f) => f.endsWith('.json'))).toHaveLength(1);
      await gw.stop('test');
      expect(readdirSync(anchors).filter((f) => f.endsWith('.json'))).toHaveLength(2);

      const ok = run(['audit', 'verify', '--anchors', anchors, '--public-key', pub], setup.dataDir);
      expect(ok.stdout).toMatch(/audit chain intact: \d+ events in \d+ lanes?, last event \d+; 2 anchor\(s\) verified/);
      expect(ok.status).toBe(0);

      const csv = run(
        ['audit', 'query', '--type', 'application-start,application-stop', '--format', 'csv'],
        setup.dataDir,
      );
      expect(csv.status).toBe(0);
      expect(csv.stdout.split('\r\n').filter((l) => /application-(start|stop)/.test(l))).toHaveLength(2);
      const bad = run(['audit', 'query', '--outcome', '3'], setup.dataDir);
      expect(bad.status).toBe(2);
      expect(bad.stderr).toContain('query parameter outcome: must be 0, 4, 8 or 12');

      // The superuser removes the stop event (and what came after it).
      const db = await openDatabase({ dataDir: setup.dataDir, poolSize: 1 });
      try {
        await db.pool.query('ALTER TABLE audit_events DISABLE TRIGGER USER');
        await db.pool.query(
          `DELETE FROM audit_events WHERE id >= (SELECT min(id) FROM audit_events WHERE kind = 'application-stop')`,
        );
        await db.pool.query('ALTER TABLE audit_events ENABLE TRIGGER USER');
      } finally {
        await db.close();
      }
      // Without the anchors: caught against the head the previous (successful) run recorded.
      const plain = run(['audit', 'verify'], setup.dataDir);
      expect(plain.status).toBe(1);
      expect(plain.stdout).toMatch(
        /chain-shortened: .* but previous verification .*verified-head-[0-9a-f]{12}\.json saw/,
      );
      // With a fresh state file and no anchors, nothing shows the missing tail (what anchors are for).
      const fresh = run(['audit', 'verify', '--state', path.join(keyDir, 'fresh.json')], setup.dataDir);
      expect(fresh.status).toBe(0);
      expect(fresh.stdout).toContain('note: no signed anchors checked');
      const caught = run(['audit', 'verify', '--anchors', anchors, '--public-key', pub], setup.dataDir);
      expect(caught.status).toBe(1);
      expect(caught.stdout).toMatch(/^AUDIT CHAIN BROKEN at event \d+/);
      expect(caught.stdout).toMatch(
        /chain-shortened: the chain( \(lane \d+\))? ends at event \d+ .* but anchor .*anchor-.*\.json saw/,
      );
      process.stdout.write(`audit verify after the tail was deleted:\n${caught.stdout}`);
    } finally {
      await setup.dispose();
    }
  });
});
