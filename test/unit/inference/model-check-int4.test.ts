/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { checkModelBundle } from '../../../src/inference/model-check.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/**
 * `radscribe model check` on the int4 fixture: the manifest's onnx.decoder.weightDtype / quantization must
 * describe the MatMulNBits nodes really in the graph (read from the .onnx, since onnxruntime reports I/O only).
 */
const INT4 = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real-int4');
const FP32 = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real');

describe('checkModelBundle: int4 weights', () => {
  let work: string;
  const copy = (src: string) => {
    work = mkdtempSync(path.join(tmpdir(), 'model-check-int4-'));
    cpSync(src, work, { recursive: true });
  };
  afterEach(() => rmSync(work, { recursive: true, force: true }));
  // biome-ignore lint/suspicious/noExplicitAny: manifest edited as plain JSON
  const edit = (f: (decoder: any) => void) => {
    const mf = path.join(work, 'manifest.json');
    const m = JSON.parse(readFileSync(mf, 'utf8'));
    f(m.onnx.decoder);
    writeFileSync(mf, JSON.stringify(m, null, 2));
  };
  const problems = async () => (await checkModelBundle(work, { ep: 'cpu', intraOpNumThreads: 1 })).problems.join('\n');

  it('accepts the committed int4 fixture', async () => {
    copy(INT4);
    const r = await checkModelBundle(work, { ep: 'cpu', intraOpNumThreads: 1 });
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('MatMulNBits nodes the manifest does not declare are a problem', async () => {
    copy(INT4);
    edit((d) => {
      delete d.weightDtype;
      delete d.quantization;
    });
    expect(await problems()).toContain(
      'onnx/decoder_model_merged.onnx: 36 MatMulNBits nodes in the graph, but the manifest declares no int4 weights',
    );
  });

  it.each([
    ['blockSize', 128, '36 MatMulNBits nodes with block_size != 128'],
    ['matmuls', 35, '36 MatMulNBits nodes in the graph, manifest says 35'],
    ['symmetric', false, '36 MatMulNBits nodes without zero points (manifest: asymmetric)'],
  ])('a wrong quantization.%s is named', async (field, value, message) => {
    copy(INT4);
    edit((d) => {
      d.quantization[field] = value;
    });
    expect(await problems()).toContain(message);
  });

  it('an fp32 graph declared int4 is a problem', async () => {
    copy(FP32);
    edit((d) => {
      d.weightDtype = 'int4';
      d.quantization = { op: 'com.microsoft.MatMulNBits', bits: 4, blockSize: 32, symmetric: true, matmuls: 36 };
    });
    expect(await problems()).toContain('0 MatMulNBits nodes in the graph, manifest says 36');
  });

  it.each([
    ['an unknown weightDtype', { weightDtype: 'int3' }, 'onnx.decoder.weightDtype must be one of float32|float16|int4'],
    [
      'int4 without quantization',
      { weightDtype: 'int4', quantization: undefined },
      'onnx.decoder: weightDtype int4 and quantization',
    ],
    [
      'bits 8',
      { quantization: { op: 'com.microsoft.MatMulNBits', bits: 8, blockSize: 32, symmetric: true, matmuls: 36 } },
      'onnx.decoder: weightDtype int4 and quantization',
    ],
  ])('the manifest shape refuses %s', async (_what, patch, message) => {
    copy(INT4);
    edit((d) => Object.assign(d, patch));
    expect(await problems()).toContain(message);
  });
});
