import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/**
 * The `radscribe` executable from a checkout (bin/radscribe → dist/src/cli.js on Node 24), on an
 * embedded PostgreSQL in a fresh data directory: migrate, audit list (itself audited), audit verify,
 * and a configuration error reported with its path and exit code 2.
 */
const BIN = path.join(__dirname, '../../bin/radscribe');

function run(args: string[], env: Record<string, string>) {
  const { DATABASE_URL: _omit, ...rest } = process.env;
  return spawnSync(BIN, args, { env: { ...rest, ...env }, encoding: 'utf8', timeout: 90_000 });
}

describe('bin/radscribe', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(path.join(tmpdir(), 'rs-cli-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('migrates, lists and verifies the audit trail on the embedded database', () => {
    const env = { RADSCRIBE_DATA_DIR: dataDir };
    const m = run(['migrate'], env);
    expect(m.stderr).not.toMatch(/radscribe: /);
    expect(m.status).toBe(0);
    expect(m.stdout).toMatch(/applied 0001_init, 0002_audit|applied/);
    expect(run(['migrate'], env).stdout).toContain('database is up to date');

    const list = run(['audit', 'list', '--json'], env);
    expect(list.status).toBe(0);
    const events = JSON.parse(list.stdout) as { kind: string }[];
    // The listing records itself before reading (110101 Audit Log Used).
    expect(events.map((e) => e.kind)).toContain('audit-query');

    const verify = run(['audit', 'verify'], env);
    expect(verify.status).toBe(0);
    expect(verify.stdout).toMatch(/audit chain intact: [1-9][0-9]* events/);
  });

  it('reports every configuration problem with its path and exits 2', () => {
    const r = run(['migrate'], { RADSCRIBE_DATA_DIR: dataDir, RADSCRIBE_HTTP_PORT: '70000', RADSCRIBE_NOPE: '1' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('http.port: must be an integer');
    expect(r.stderr).toContain('RADSCRIBE_NOPE: does not name a configuration key');
  });
});

describe('radscribe demo (the README main job)', () => {
  it('runs end to end, leaves the SR in the outbox, and logs no PHI', () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-demo-'));
    try {
      const r = run(['demo'], { RADSCRIBE_DATA_DIR: dataDir, RADSCRIBE_LOG_LEVEL: 'debug' });
      expect(r.stderr).not.toMatch(/^radscribe: /m);
      expect(r.status).toBe(0);
      const srPath = /^SR file: (.+)$/m.exec(r.stdout)?.[1];
      expect(srPath?.startsWith(path.join(dataDir, 'outbox'))).toBe(true);
      expect(r.stdout).toContain('PRELIMINARY');
      expect(r.stdout).toContain('UNVERIFIED');
      expect(r.stdout).toMatch(/instance-received[\s\S]*study-queued[\s\S]*inference-run[\s\S]*sr-exported/);
      // The sample's patient name and ID (PS3.3 C.7.1.1) must appear in no log line, even at debug.
      expect(r.stderr.length).toBeGreaterThan(1000);
      expect(r.stderr).not.toContain('CompressedSamples');
      expect(r.stderr).not.toContain('11RG3'); // PatientID
      expect(r.stderr).not.toContain('FUJI95706'); // AccessionNumber
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
