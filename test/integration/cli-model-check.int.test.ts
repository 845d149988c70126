import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** `radscribe model check` as an operator runs it: exit 0 only when usable, every problem printed. [issue 4] */
const BIN = path.join(__dirname, '../../bin/radscribe');
const FIXTURES = path.join(__dirname, '../fixtures/models');

function run(args: string[]) {
  return spawnSync(BIN, args, {
    encoding: 'utf8',
    timeout: 90_000,
    env: { ...process.env, RADSCRIBE_LOG_LEVEL: 'error' },
  });
}

describe('radscribe model check', () => {
  let work: string;
  beforeEach(() => {
    work = mkdtempSync(path.join(tmpdir(), 'cli-model-check-'));
    cpSync(path.join(FIXTURES, 'tiny-mllama'), work, { recursive: true });
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  it.each(['tiny-mllama', 'tiny-merge-vlm'])('exits 0 for the committed %s fixture', (name) => {
    const r = run(['model', 'check', path.join(FIXTURES, name)]);
    expect(r.stdout).toContain('OK: the bundle is usable');
    expect(r.status).toBe(0);
  });

  it('prints every problem of a bundle with a wrong shape, a missing file and a bad hash, and exits 1', () => {
    const mf = path.join(work, 'manifest.json');
    const m = JSON.parse(readFileSync(mf, 'utf8'));
    m.onnx.visionEncoder.inputs[0].dims = ['batch', 'num_images', 4, 3, 448, 448];
    m.files['config.json'].sha256 = '0'.repeat(64);
    writeFileSync(mf, JSON.stringify(m));
    unlinkSync(path.join(work, 'generation_config.json'));
    const r = run(['model', 'check', work]);
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('PROBLEM  config.json: sha256 mismatch');
    expect(r.stdout).toMatch(/PROBLEM {2}generation_config\.json: missing/);
    expect(r.stdout).toContain(
      'PROBLEM  onnx/vision_encoder.onnx: input pixel_values shape [batch,num_images,4,3,560,560] in the graph, manifest says [batch,num_images,4,3,448,448]',
    );
    expect(r.stdout).toContain('NOT USABLE: 3 problem(s)');
  });

  it('--ep cuda says the CUDA provider cannot be loaded here and how to supply it; --json is machine-readable', () => {
    const r = run(['model', 'check', work, '--ep', 'cuda', '--json']);
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout) as { ok: boolean; provider: string; problems: string[] };
    expect(report.ok).toBe(false);
    expect(report.provider).toBe('cuda');
    expect(report.problems.join('\n')).toMatch(/CUDA execution provider cannot be loaded.*docs\/gpu-host\.md/);
  });

  it('rejects bad usage with exit 2', () => {
    expect(run(['model', 'check']).status).toBe(2);
    expect(run(['model', 'check', work, '--ep', 'tpu']).status).toBe(2);
  });
});
