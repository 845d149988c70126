/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkModelBundle } from '../../../src/inference/model-check.js';
import { generateFixtureBundle } from '../../../tools/make-fixture-model.js';
import { TINY_MERGE_DIR, TINY_MLLAMA_DIR } from './helpers.js';

/** `radscribe model check` logic on broken copies of both fixtures, built in temp dirs. */
describe.each([
  ['mllama', TINY_MLLAMA_DIR],
  ['embedding-merge', TINY_MERGE_DIR],
])('checkModelBundle (%s)', (family, source) => {
  let work: string;
  beforeEach(() => {
    work = mkdtempSync(path.join(tmpdir(), 'model-check-'));
    cpSync(source, work, { recursive: true });
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  interface Io {
    name: string;
    dtype: string;
    dims: Array<number | string>;
  }
  interface EditableManifest {
    onnx: Record<'visionEncoder' | 'embedTokens' | 'decoder', { inputs: Io[]; outputs: Io[] }>;
    files: Record<string, { sha256: string }>;
  }
  const io = (list: Io[], name: string): Io => {
    const t = list.find((x) => x.name === name);
    if (!t) throw new Error(`no ${name}`);
    return t;
  };
  const editManifest = (f: (m: EditableManifest) => void) => {
    const mf = path.join(work, 'manifest.json');
    const m = JSON.parse(readFileSync(mf, 'utf8'));
    f(m);
    writeFileSync(mf, JSON.stringify(m, null, 2));
  };

  it('passes the committed fixture, loading every graph and comparing its I/O', async () => {
    const r = await checkModelBundle(work, { ep: 'cpu' });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.family).toBe(family);
    expect(r.graphs.every((g) => g.loaded)).toBe(true);
    expect(r.notes.join(' ')).toContain('float32');
  });

  it('a wrong shape in the manifest is named (graph, tensor, both shapes)', async () => {
    editManifest((m) => {
      io(m.onnx.decoder.inputs, 'inputs_embeds').dims = ['batch', 'sequence_length', 4096];
    });
    const r = await checkModelBundle(work);
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(
      /onnx\/decoder_model_merged\.onnx: input inputs_embeds shape \[batch,sequence_length,32\] in the graph, manifest says \[batch,sequence_length,4096\]/,
    );
  });

  it('a wrong dtype, a renamed symbolic dim and an undeclared graph output are each named', async () => {
    editManifest((m) => {
      io(m.onnx.decoder.inputs, 'position_ids').dtype = 'int32';
      io(m.onnx.embedTokens.inputs, 'input_ids').dims = ['b', 'sequence_length'];
      m.onnx.decoder.outputs = m.onnx.decoder.outputs.filter((x) => x.name !== 'logits');
    });
    const text = (await checkModelBundle(work)).problems.join('\n');
    expect(text).toContain('input position_ids dtype int64 in the graph, manifest says int32');
    expect(text).toContain('onnx/embed_tokens.onnx: input input_ids shape [batch,sequence_length] in the graph');
    expect(text).toContain('output logits (float32');
  });

  it('a missing file is named', async () => {
    unlinkSync(path.join(work, 'onnx', 'embed_tokens.onnx'));
    const r = await checkModelBundle(work);
    expect(r.ok).toBe(false);
    expect(r.problems.join('\n')).toMatch(/onnx\/embed_tokens\.onnx: missing/);
    expect(r.graphs.find((g) => g.role === 'embedTokens')?.loaded).toBe(false);
  });

  it('a bad hash is named', async () => {
    editManifest((m) => {
      (m.files['tokenizer.json'] as { sha256: string }).sha256 = 'f'.repeat(64);
    });
    const r = await checkModelBundle(work);
    expect(r.ok).toBe(false);
    expect(r.problems).toContain('tokenizer.json: sha256 mismatch');
  });

  it('a graph swapped for another build fails on its hash and on its I/O', async () => {
    const other = mkdtempSync(path.join(tmpdir(), 'model-check-other-'));
    try {
      generateFixtureBundle(other, { family: family as 'mllama', floatIo: 'float16' });
      cpSync(
        path.join(other, 'onnx', 'decoder_model_merged.onnx'),
        path.join(work, 'onnx', 'decoder_model_merged.onnx'),
      );
      const text = (await checkModelBundle(work)).problems.join('\n');
      expect(text).toContain('onnx/decoder_model_merged.onnx: s');
      expect(text).toContain('dtype float16 in the graph, manifest says float32');
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it('--ep cuda reports clearly that the CUDA provider cannot be loaded here and how to supply it', async () => {
    const r = await checkModelBundle(work, { ep: 'cuda' });
    expect(r.ok).toBe(false);
    const text = r.problems.join('\n');
    expect(text).toContain('CUDA execution provider cannot be loaded');
    expect(text).toContain('Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0');
    expect(text).toContain('docs/gpu-host.md');
  });
});
