/**
 * @jest-environment ./test/unit/inference/ort-test-environment.js
 */
import { createHash } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { generate } from '../../src/inference/generate.js';
import { dequantizeMatMulNBits, matMulNBitsNodes } from '../../src/inference/matmul-nbits.js';
import { MllamaModel } from '../../src/inference/mllama-model.js';
import { loadModelBundle } from '../../src/inference/model-bundle.js';
import { checkModelBundle } from '../../src/inference/model-check.js';
import { readOnnxModel } from '../../src/inference/onnx-proto.js';
import { FIXTURES_DIR } from '../../src/runtime-paths.js';

/**
 * Issue 10, int4: tiny-mllama-real with its decoder's 36 weight MatMuls rewritten to com.microsoft MatMulNBits
 * (tools/export/quantize_int4.py, block 32, symmetric) on onnxruntime-node 1.30 CPU.
 *
 * 1. Against the fp32 PyTorch references of ../tiny-mllama-real. Quantization changes the model, and this
 *    random-weight model's top-1/top-2 logit margins are 0.01-0.3 (logit std about 0.6), so greedy tokens
 *    soon part ways; the bound is on the logits up to and including the first differing token
 *    (INT4_BOUND), plus the correlation of the prefill logits with PyTorch's. Measured numbers are printed.
 * 2. Against the same runtime on the fp32 decoder whose weights are replaced by the int4 weights dequantized
 *    in TypeScript ("fake quant"): MatMulNBits must compute exactly that model, so tokens are equal and
 *    logits agree within 1e-4. The whole gap in (1) is then quantization error, not a runtime or packing bug.
 */
const REF_DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real', 'reference');
const FP32_DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real');
const INT4_DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real-int4');
const DECODER = 'onnx/decoder_model_merged.onnx';
const INT4_BOUND = 0.5;
const MIN_PREFILL_CORRELATION = 0.95;

interface ReferenceCase {
  name: string;
  pixelValuesShape: number[];
  pixelValuesFile: string;
  aspectRatioIds: number[][];
  aspectRatioMask: number[][][];
  promptIds: number[];
  tokens: number[];
  /** Every 1021st vocabulary id; logits[s][k] is PyTorch's logit of logitIds[k] at step s. */
  logitIds: number[];
  logits: number[][];
  /** Per step PyTorch's top-16 [id, logit]. */
  topLogits: [number, number][][];
}
const reference = JSON.parse(readFileSync(path.join(REF_DIR, 'reference.json'), 'utf8')) as { cases: ReferenceCase[] };

function pixels(c: ReferenceCase): Float32Array {
  const buf = gunzipSync(readFileSync(path.join(REF_DIR, c.pixelValuesFile)));
  const out = new Float32Array(buf.byteLength / 4);
  for (let i = 0; i < out.length; i++) out[i] = buf.readFloatLE(i * 4);
  return out;
}

async function run(model: MllamaModel, c: ReferenceCase): Promise<{ tokens: number[]; logits: Float32Array[] }> {
  const logits: Float32Array[] = [];
  const r = await generate(
    model,
    c.promptIds,
    {
      pixelValues: pixels(c),
      dims: c.pixelValuesShape,
      aspectRatioId: c.aspectRatioIds[0]?.[0] ?? 0,
      aspectRatioMask: c.aspectRatioMask[0]?.[0] ?? [],
    },
    { maxNewTokens: c.tokens.length, stopTokenIds: [], onLogits: (s, l) => (logits[s] = l) },
  );
  return { tokens: r.tokenIds, logits };
}

function correlation(a: ArrayLike<number>, b: ArrayLike<number>): number {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] as number;
    mb += b[i] as number;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = (a[i] as number) - ma;
    const db = (b[i] as number) - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  return sab / Math.sqrt(saa * sbb);
}

const opts = { executionProviders: ['cpu'] as const, intraOpNumThreads: 1 };

describe('tiny-mllama-real-int4 (MatMulNBits decoder)', () => {
  let model: MllamaModel;
  const int4Runs = new Map<string, { tokens: number[]; logits: Float32Array[] }>();

  beforeAll(async () => {
    model = await MllamaModel.create(await loadModelBundle(INT4_DIR), opts);
  });
  afterAll(async () => {
    await model.dispose();
  });

  it('radscribe model check accepts it and names the int4 weights', async () => {
    const r = await checkModelBundle(INT4_DIR, { ep: 'cpu', intraOpNumThreads: 1 });
    expect(r.problems).toEqual([]);
    expect(r.notes.join('\n')).toContain('weights int4 (com.microsoft.MatMulNBits x36, block 32, symmetric)');
  });

  it(`vs fp32 PyTorch: finite logits, |Δ logit| <= ${INT4_BOUND} up to the first differing token, prefill logits correlated >= ${MIN_PREFILL_CORRELATION}`, async () => {
    for (const c of reference.cases) {
      const got = await run(model, c);
      int4Runs.set(c.name, got);
      const firstDiff = c.tokens.findIndex((t, i) => got.tokens[i] !== t);
      const upTo = firstDiff < 0 ? c.tokens.length : firstDiff + 1;
      let maxDiff = 0;
      for (let s = 0; s < c.tokens.length; s++) {
        const l = got.logits[s];
        if (!l) throw new Error(`no logits for step ${s}`);
        expect(l.every(Number.isFinite)).toBe(true);
        if (s >= upTo) continue;
        // The committed ids: the strided sample and PyTorch's top 16 (full rows would be ~100 MB).
        c.logitIds.forEach((id, k) => {
          maxDiff = Math.max(maxDiff, Math.abs((c.logits[s]?.[k] as number) - (l[id] as number)));
        });
        for (const [id, v] of c.topLogits[s] ?? []) maxDiff = Math.max(maxDiff, Math.abs(v - (l[id] as number)));
      }
      const prefill = got.logits[0] ?? new Float32Array();
      const corr = correlation(
        c.logits[0] ?? [],
        c.logitIds.map((id) => prefill[id] as number),
      );
      // eslint-disable-next-line no-console
      console.log(
        `int4 ${c.name}: ${firstDiff < 0 ? `tokens EQUAL (${c.tokens.length})` : `top-1 equal for the first ${firstDiff} of ${c.tokens.length} steps`}, ` +
          `max |Δ logit| ${maxDiff.toExponential(2)} (to step ${upTo}), prefill logit correlation ${corr.toFixed(3)}`,
      );
      expect(maxDiff).toBeLessThanOrEqual(INT4_BOUND);
      expect(corr).toBeGreaterThanOrEqual(MIN_PREFILL_CORRELATION);
    }
  });

  it('equals the fp32 runtime on the TS-dequantized weights: same tokens, |Δ logit| <= 1e-4', async () => {
    const work = mkdtempSync(path.join(tmpdir(), 'int4-fakequant-'));
    let fake: MllamaModel | undefined;
    try {
      cpSync(INT4_DIR, work, { recursive: true });
      // Overwrite each fp32 MatMul weight's raw_data in place with its int4 value dequantized here.
      const buf = readFileSync(path.join(FP32_DIR, DECODER));
      const fp32 = readOnnxModel(buf);
      const int4 = readOnnxModel(readFileSync(path.join(INT4_DIR, DECODER)));
      for (const node of matMulNBitsNodes(int4)) {
        const orig = fp32.nodes.find((n) => `${n.name}_Q4` === node.name);
        const t = fp32.initializers.get(orig?.inputs[1] ?? '');
        if (!t || t.raw.byteLength !== node.k * node.n * 4) throw new Error(`${node.name}: no fp32 weight`);
        const { weight } = dequantizeMatMulNBits(int4, node);
        const at = t.raw.byteOffset - buf.byteOffset;
        weight.forEach((v, i) => {
          buf.writeFloatLE(v, at + i * 4);
        });
      }
      writeFileSync(path.join(work, DECODER), buf);
      const mf = path.join(work, 'manifest.json');
      const m = JSON.parse(readFileSync(mf, 'utf8'));
      m.files[DECODER] = { sha256: createHash('sha256').update(buf).digest('hex'), size: buf.byteLength };
      delete m.onnx.decoder.weightDtype;
      delete m.onnx.decoder.quantization;
      writeFileSync(mf, JSON.stringify(m, null, 2));
      fake = await MllamaModel.create(await loadModelBundle(work), opts);
      for (const c of reference.cases) {
        const q = int4Runs.get(c.name) ?? (await run(model, c));
        const f = await run(fake, c);
        let maxDiff = 0;
        f.logits.forEach((row, s) => {
          row.forEach((v, i) => {
            maxDiff = Math.max(maxDiff, Math.abs(v - (q.logits[s]?.[i] as number)));
          });
        });
        // eslint-disable-next-line no-console
        console.log(`int4 vs fake-quant fp32 ${c.name}: max |Δ logit| ${maxDiff.toExponential(2)}`);
        expect(q.tokens).toEqual(f.tokens);
        expect(maxDiff).toBeLessThanOrEqual(1e-4);
      }
    } finally {
      await fake?.dispose();
      rmSync(work, { recursive: true, force: true });
    }
  });
});
