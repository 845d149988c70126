import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as ort from 'onnxruntime-node';
import { normalizeErrorString } from '../errors.js';
import { matMulNBitsNodes } from './matmul-nbits.js';
import { inspectModelBundle } from './model-bundle.js';
import { modelFromSessions } from './model-factory.js';
import { type ModelFamily, type OnnxGraphSpec, OnnxRole, WeightDtype } from './model-manifest.js';
import { readOnnxModel } from './onnx-proto.js';
import { compareGraphIo, ExecutionProvider, type OrtSessions } from './vision-language-model.js';

/**
 * `radscribe model check` (issue 4): everything that can be wrong with a bundle, reported at once. The
 * manifest's shape, every file's presence, size and sha256, the manifest against the HF configs, then each
 * graph loaded on the requested EP and its ACTUAL inputs and outputs (InferenceSession inputMetadata /
 * outputMetadata: names, dtypes, symbolic dims) against manifest.json, then the family's own checks.
 */

export interface GraphReport {
  role: OnnxRole;
  path: string;
  loaded: boolean;
  inputs: number;
  outputs: number;
}

export interface ModelCheckReport {
  dir: string;
  ok: boolean;
  family?: ModelFamily;
  name?: string;
  version?: string;
  provider: ExecutionProvider;
  graphs: GraphReport[];
  problems: string[];
  /** Facts worth printing that are not problems (KV dtype, batch). */
  notes: string[];
}

/** Where onnxruntime-node looks for the CUDA provider libraries (js-stack.md §1, docs/gpu-host.md). */
export function cudaProviderDir(): string {
  const pkg = path.dirname(require.resolve('onnxruntime-node/package.json'));
  return path.join(pkg, 'bin', 'napi-v6', process.platform, process.arch);
}

export const CUDA_PROVIDER_LIBS = ['libonnxruntime_providers_cuda.so', 'libonnxruntime_providers_shared.so'] as const;

function cudaHint(): string {
  const dir = cudaProviderDir();
  const missing = CUDA_PROVIDER_LIBS.filter((f) => !existsSync(path.join(dir, f)));
  const where = missing.length
    ? `missing ${missing.join(', ')} in ${dir}`
    : `the provider libraries are in ${dir} but did not load (CUDA 12 + cuDNN 9 on LD_LIBRARY_PATH? driver?)`;
  return (
    `CUDA execution provider cannot be loaded: ${where}. Supply them from NuGet ` +
    'Microsoft.ML.OnnxRuntime.Gpu.Linux 1.30.0 (runtimes/linux-x64/native/) and install CUDA 12 and cuDNN 9; ' +
    'see docs/gpu-host.md'
  );
}

/** Protobuf messages, hence graph files without external data, are at most 2 GiB. */
const MAX_GRAPH_FILE = 2 ** 31;

/**
 * The graph's actual weight storage against manifest `weightDtype` / `quantization` (onnxruntime reports only
 * I/O metadata, so the graph's nodes are read: MatMulNBits count, bits, block_size, zero points).
 */
export async function compareGraphWeights(
  spec: OnnxGraphSpec,
  file: string,
): Promise<{ problems: string[]; note?: string }> {
  if (statSync(file).size > MAX_GRAPH_FILE) return { problems: [] };
  const nodes = matMulNBitsNodes(readOnnxModel(await readFile(file)));
  const q = spec.quantization;
  if (spec.weightDtype !== WeightDtype.Int4 || !q) {
    return {
      problems: nodes.length
        ? [`${spec.path}: ${nodes.length} MatMulNBits nodes in the graph, but the manifest declares no int4 weights`]
        : [],
    };
  }
  const problems: string[] = [];
  const bad = (what: string, pred: (n: (typeof nodes)[number]) => boolean) => {
    const n = nodes.filter(pred).length;
    if (n) problems.push(`${spec.path}: ${n} MatMulNBits nodes ${what}`);
  };
  if (nodes.length !== q.matmuls)
    problems.push(`${spec.path}: ${nodes.length} MatMulNBits nodes in the graph, manifest says ${q.matmuls}`);
  bad(`with bits != ${q.bits}`, (n) => n.bits !== q.bits);
  bad(`with block_size != ${q.blockSize}`, (n) => n.blockSize !== q.blockSize);
  // Symmetric blocks carry no zero_points input (the spec's default 2^(bits-1) applies).
  bad(q.symmetric ? 'with zero points (manifest: symmetric)' : 'without zero points (manifest: asymmetric)', (n) =>
    q.symmetric ? Boolean(n.inputs[3]) : !n.inputs[3],
  );
  return {
    problems,
    note: `${spec.path}: weights int4 (${q.op} x${nodes.length}, block ${q.blockSize}, ${q.symmetric ? 'symmetric' : 'asymmetric'})`,
  };
}

export async function checkModelBundle(
  bundleDir: string,
  opts: { ep?: ExecutionProvider; intraOpNumThreads?: number } = {},
): Promise<ModelCheckReport> {
  const ep = opts.ep ?? ExecutionProvider.Cpu;
  const inspection = await inspectModelBundle(bundleDir);
  const m = inspection.manifest;
  const report: ModelCheckReport = {
    dir: inspection.dir,
    ok: false,
    provider: ep,
    graphs: [],
    problems: [...inspection.problems],
    notes: [],
    ...(m ? { family: m.modelFamily, name: m.name, version: m.version } : {}),
  };
  if (!m) return report;

  const sessionOptions: ort.InferenceSession.SessionOptions = {
    executionProviders: [ep],
    graphOptimizationLevel: 'all',
    ...(opts.intraOpNumThreads ? { intraOpNumThreads: opts.intraOpNumThreads } : {}),
  };
  const sessions: Partial<Record<OnnxRole, ort.InferenceSession>> = {};
  let cudaReported = false;
  try {
    for (const role of Object.values(OnnxRole)) {
      const spec = m.onnx[role];
      const file = path.join(inspection.dir, spec.path);
      const g: GraphReport = { role, path: spec.path, loaded: false, inputs: 0, outputs: 0 };
      report.graphs.push(g);
      if (!existsSync(file)) continue; // already reported as missing by the hash check
      try {
        const s = await ort.InferenceSession.create(file, sessionOptions);
        sessions[role] = s;
        g.loaded = true;
        g.inputs = s.inputNames.length;
        g.outputs = s.outputNames.length;
        report.problems.push(...compareGraphIo(spec, s));
        if (role === OnnxRole.Decoder || spec.weightDtype === WeightDtype.Int4) {
          try {
            const w = await compareGraphWeights(spec, file);
            report.problems.push(...w.problems);
            if (w.note) report.notes.push(w.note);
          } catch (err: unknown) {
            report.problems.push(`${spec.path}: graph nodes unreadable (${normalizeErrorString(err)})`);
          }
        }
      } catch (err: unknown) {
        if (ep === ExecutionProvider.Cuda) {
          if (!cudaReported) report.problems.push(`${cudaHint()} (onnxruntime: ${normalizeErrorString(err)})`);
          cudaReported = true;
        } else report.problems.push(`${spec.path}: cannot be loaded on ${ep}: ${normalizeErrorString(err)}`);
      }
    }
    const { visionEncoder: vision, embedTokens: embed, decoder } = sessions;
    if (report.problems.length === 0 && inspection.bundle && vision && embed && decoder) {
      const s: OrtSessions = { provider: ep, vision, embed, decoder };
      try {
        const model = modelFromSessions(inspection.bundle, s);
        report.notes.push(
          `family ${model.family}; ${model.kv.names.length / 2} self-attention KV layers in ${model.kv.dtype}; ` +
            `batch ${model.dynamicBatch ? 'dynamic' : 'fixed'}; vocab ${model.vocabSize}`,
        );
      } catch (err: unknown) {
        report.problems.push(normalizeErrorString(err));
      }
    }
  } finally {
    await Promise.all(Object.values(sessions).map((s) => s.release()));
  }
  report.ok = report.problems.length === 0;
  return report;
}
