import { spawnSync } from 'node:child_process';
import path from 'node:path';

/** `radscribe describe` on the DICOM fixtures with both fixture families (bin/radscribe after the build). [issue 4] */
const BIN = path.join(__dirname, '../../bin/radscribe');
const DICOM = path.join(__dirname, '../fixtures/dicom');
const MODELS = path.join(__dirname, '../fixtures/models');

function run(args: string[]) {
  return spawnSync(BIN, args, {
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, RADSCRIBE_LOG_LEVEL: 'error' },
  });
}

interface Entry {
  file: string;
  frame: number;
  text: string;
  tokens: number[];
  timings: { preprocessMs: number; visionEncoderMs: number; prefillMs: number; decodeMs: number[] };
  provider: string;
  model: { path: string; name: string; version: string };
}

describe('radscribe describe', () => {
  const files = ['CT_small.dcm', 'SC_rgb_rle.dcm', 'sr_document.dcm'].map((f) => path.join(DICOM, f));

  it.each(['tiny-mllama', 'tiny-merge-vlm'])('--json prints one array, one object per selected image (%s)', (name) => {
    const r = run(['describe', ...files, '--model', path.join(MODELS, name), '--json', '--max-new-tokens', '6']);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as Entry[];
    // The SR has no pixel data: not selected.
    expect(out.map((e) => path.basename(e.file))).toEqual(['CT_small.dcm', 'SC_rgb_rle.dcm']);
    for (const e of out) {
      expect(e.frame).toBe(1);
      expect(e.tokens.length).toBeGreaterThan(0);
      expect(e.tokens.length).toBeLessThanOrEqual(6);
      expect(typeof e.text).toBe('string');
      expect(e.provider).toBe('cpu');
      expect(e.model.path).toBe(path.join(MODELS, name));
      expect(e.model.name).toContain('fixture');
      expect(e.timings.preprocessMs).toBeGreaterThan(0);
      expect(e.timings.visionEncoderMs).toBeGreaterThan(0);
      expect(e.timings.prefillMs).toBeGreaterThan(0);
      expect(e.timings.decodeMs).toHaveLength(e.tokens.length - 1);
    }
    expect(r.stderr).toContain('sr_document.dcm: no pixel data');
  });

  it('without --model uses the configured bundle (the fixture) and prints the text, labelled', () => {
    const r = run(['describe', path.join(DICOM, 'MR_small.dcm'), '--max-new-tokens', '4']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('MR_small.dcm (test fixture — output is meaningless):');
  });

  it('an unreadable file is reported and makes the exit status 1', () => {
    const r = run(['describe', path.join(DICOM, 'MR_truncated.dcm'), '--max-new-tokens', '2']);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('MR_truncated.dcm');
  });
});
