import * as ort from 'onnxruntime-node';
import { ErrorCode, ModelError, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import { nativeFeeds } from './float16.js';
import type { ImageInput } from './image-input.js';
import type { ModelBundle } from './model-bundle.js';
import { type ModelFamily, type OnnxGraphSpec, OnnxRole, type TensorDtype } from './model-manifest.js';

/**
 * One interface over both VLM families (model-contract §11.10): the generation loop (generate.ts) drives a
 * `VisionLanguageModel` and never branches on the family. Mllama (cross-attention) and embedding-merge
 * (LLaVA / Gemma 3 / SmolVLM style) differ only in how an image becomes decoder inputs.
 */

export const ExecutionProvider = { Cuda: 'cuda', Cpu: 'cpu' } as const;
export type ExecutionProvider = (typeof ExecutionProvider)[keyof typeof ExecutionProvider];
export const DEFAULT_EXECUTION_PROVIDERS: readonly ExecutionProvider[] = [ExecutionProvider.Cpu];

export interface ModelOptions {
  executionProviders?: readonly ExecutionProvider[];
  intraOpNumThreads?: number;
}

/** Self-attention KV cache layout, discovered from the decoder session (model-contract §11.2). */
export interface KvSpec {
  /** `past_key_values.{i}.key|value` inputs. */
  names: readonly string[];
  dtype: 'float32' | 'float16';
  kvHeads: number;
  headDim: number;
}

/** A family's encoded images; owned by the caller of encodeImages, who disposes it. */
export interface ImageEncoding {
  readonly batch: number;
  dispose(): void;
}

export interface VisionLanguageModel {
  readonly family: ModelFamily;
  /** The EP the sessions actually loaded on. */
  readonly provider: ExecutionProvider;
  readonly kv: KvSpec;
  readonly vocabSize: number;
  readonly imageTokenId: number;
  /** True when every graph has a symbolic batch dimension, so several images can be decoded together. */
  readonly dynamicBatch: boolean;
  /** Time spent inside session.run since creation (ms): the benchmark's "inside ORT" figure. */
  readonly runMs: number;
  /** Throws RadScribeError(request-invalid) for a malformed image. */
  validateImage(img: ImageInput): void;
  /** Prompt ids as the chat template renders them (one image token) → the ids the decoder sees. */
  expandPrompt(ids: readonly number[]): number[];
  encodeImages(images: readonly ImageInput[]): Promise<ImageEncoding>;
  /**
   * Decoder inputs other than attention_mask, position_ids and past KV, for the last `newCount` tokens of
   * each row of `history` (rows have equal length; row b belongs to image b of `enc`).
   */
  decoderInputs(
    enc: ImageEncoding,
    history: readonly (readonly number[])[],
    newCount: number,
  ): Promise<Record<string, ort.Tensor>>;
  /** One decoder_model_merged pass; returns logits and present.*. */
  decode(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>>;
  /** Optional decoder inputs the graph declares (model-contract §4: num_logits_to_keep, use_cache_branch). */
  readonly optionalDecoderInputs: ReadonlySet<string>;
  /** Idempotent. */
  dispose(): Promise<void>;
}

export const PAST_RE = /^past_key_values\.(\d+)\.(key|value)$/;
const log = childLogger('vision-language-model');

export interface OrtSessions {
  provider: ExecutionProvider;
  vision: ort.InferenceSession;
  embed: ort.InferenceSession;
  decoder: ort.InferenceSession;
}

/**
 * Creates the three sessions by path (external data resolves from disk), trying each requested EP alone, in
 * order: onnxruntime-node does not report which EP a multi-EP session ended up on, and a missing CUDA
 * provider library fails at create time (js-stack.md §1 "Execution providers").
 */
export async function createSessions(bundle: ModelBundle, opts: ModelOptions = {}): Promise<OrtSessions> {
  const eps = opts.executionProviders?.length ? opts.executionProviders : DEFAULT_EXECUTION_PROVIDERS;
  const failures: string[] = [];
  for (const ep of eps) {
    const sessionOptions: ort.InferenceSession.SessionOptions = {
      executionProviders: [ep],
      graphOptimizationLevel: 'all',
    };
    if (opts.intraOpNumThreads !== undefined && opts.intraOpNumThreads > 0)
      sessionOptions.intraOpNumThreads = opts.intraOpNumThreads;
    const sessions: ort.InferenceSession[] = [];
    try {
      for (const role of [OnnxRole.VisionEncoder, OnnxRole.EmbedTokens, OnnxRole.Decoder]) {
        sessions.push(await ort.InferenceSession.create(bundle.onnxPaths[role], sessionOptions));
      }
    } catch (err: unknown) {
      await Promise.all(sessions.map((s) => s.release()));
      failures.push(`${ep}: ${normalizeErrorString(err)}`);
      log.warn('execution provider unavailable, trying next', { ep, error: normalizeErrorString(err) });
      continue;
    }
    const [vision, embed, decoder] = sessions as [ort.InferenceSession, ort.InferenceSession, ort.InferenceSession];
    return { provider: ep, vision, embed, decoder };
  }
  throw new ModelError(
    ErrorCode.ModelInvalid,
    `no execution provider could load ${bundle.dir}: ${failures.join('; ')}`,
  );
}

export async function releaseSessions(s: OrtSessions): Promise<void> {
  await Promise.all([s.vision.release(), s.embed.release(), s.decoder.release()]);
}

type Meta = ort.InferenceSession.ValueMetadata;

function metaDescr(m: Meta): string {
  return m.isTensor ? `${m.type} [${m.shape.join(',')}]` : 'non-tensor';
}

/**
 * Manifest vs the session's actual inputs and outputs: names, dtypes and every dimension (a number must
 * match exactly, a symbolic name must be the same name). Returns one line per mismatch, naming the file.
 */
export function compareGraphIo(spec: OnnxGraphSpec, session: ort.InferenceSession): string[] {
  const problems: string[] = [];
  const check = (kind: 'input' | 'output', declared: OnnxGraphSpec['inputs'], actual: readonly Meta[]) => {
    const byName = new Map(actual.map((m) => [m.name, m]));
    for (const t of declared) {
      const m = byName.get(t.name);
      if (!m) {
        problems.push(`${spec.path}: ${kind} ${t.name} declared in manifest.json but not in the graph`);
        continue;
      }
      if (!m.isTensor) {
        problems.push(`${spec.path}: ${kind} ${t.name} is not a tensor`);
        continue;
      }
      if (m.type !== t.dtype)
        problems.push(`${spec.path}: ${kind} ${t.name} dtype ${m.type} in the graph, manifest says ${t.dtype}`);
      const same = m.shape.length === t.dims.length && m.shape.every((d, i) => d === t.dims[i]);
      if (!same)
        problems.push(
          `${spec.path}: ${kind} ${t.name} shape [${m.shape.join(',')}] in the graph, manifest says [${t.dims.join(',')}]`,
        );
    }
    const declaredNames = new Set(declared.map((t) => t.name));
    for (const m of actual) {
      if (!declaredNames.has(m.name))
        problems.push(`${spec.path}: ${kind} ${m.name} (${metaDescr(m)}) is in the graph but not in manifest.json`);
    }
  };
  check('input', spec.inputs, session.inputMetadata);
  check('output', spec.outputs, session.outputMetadata);
  return problems;
}

export function inputMeta(session: ort.InferenceSession, name: string): ort.InferenceSession.TensorValueMetadata {
  const m = session.inputMetadata.find((x) => x.name === name);
  if (!m?.isTensor) throw new ModelError(ErrorCode.ModelInvalid, `graph input ${name} missing or not a tensor`);
  return m;
}

export function floatTypeOf(session: ort.InferenceSession, name: string): 'float32' | 'float16' {
  const t = inputMeta(session, name).type as TensorDtype;
  if (t !== 'float32' && t !== 'float16')
    throw new ModelError(ErrorCode.ModelInvalid, `graph input ${name} must be float32 or float16, is ${t}`);
  return t;
}

/** A symbolic (string) or unknown (-1) first dimension on every named input means the batch is dynamic. */
export function hasDynamicBatch(session: ort.InferenceSession, names: readonly string[]): boolean {
  return names.every((n) => {
    const d = inputMeta(session, n).shape[0];
    return typeof d === 'string' || d === -1;
  });
}

export function configNumber(record: unknown, key: string, file: string): number {
  const v = (record as Record<string, unknown> | undefined)?.[key];
  if (typeof v !== 'number') throw new ModelError(ErrorCode.ModelInvalid, `${file}: ${key} missing`);
  return v;
}

/** Times session.run and turns ORT failures into typed errors naming the graph. */
/** An int64 tensor from plain numbers (ids, masks, positions). */
export function int64(values: ArrayLike<number>, dims: readonly number[]): ort.Tensor {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(Array.from(values), (v) => BigInt(v)),
    dims,
  );
}

export class TimedRunner {
  runMs = 0;
  async run(
    session: ort.InferenceSession,
    graph: string,
    feeds: Record<string, ort.Tensor>,
  ): Promise<Record<string, ort.Tensor>> {
    const t0 = performance.now();
    try {
      return (await session.run(nativeFeeds(feeds))) as Record<string, ort.Tensor>;
    } catch (err: unknown) {
      throw new RadScribeError(
        ErrorCode.InferenceFailed,
        `onnxruntime run of ${graph} failed: ${normalizeErrorString(err)}`,
        {
          cause: err,
        },
      );
    } finally {
      this.runMs += performance.now() - t0;
    }
  }
}

/** Discovers the self-attention cache inputs and checks each has a present.* output. */
export function discoverKv(
  bundle: ModelBundle,
  decoder: ort.InferenceSession,
  kvHeads: number,
  headDim: number,
): KvSpec {
  const names = decoder.inputNames.filter((n) => PAST_RE.test(n));
  const problems: string[] = [];
  const dtypes = new Set(names.map((n) => floatTypeOf(decoder, n)));
  for (const n of names) {
    const layer = Number(PAST_RE.exec(n)?.[1]);
    if (bundle.manifest.crossAttentionLayers.includes(layer))
      problems.push(`${bundle.manifest.onnx.decoder.path}: ${n} is a cross-attention layer`);
    const present = n.replace('past_key_values.', 'present.');
    if (!decoder.outputNames.includes(present))
      problems.push(`${bundle.manifest.onnx.decoder.path}: output ${present} missing`);
  }
  if (dtypes.size > 1) problems.push(`${bundle.manifest.onnx.decoder.path}: past_key_values mix float32 and float16`);
  if (problems.length > 0)
    throw new ModelError(ErrorCode.ModelInvalid, `model bundle ${bundle.dir}:\n  - ${problems.join('\n  - ')}`);
  return { names, dtype: [...dtypes][0] ?? 'float32', kvHeads, headDim };
}

/** Fails loudly when the bundle's graphs do not match its manifest (model-contract §11.2). */
export function assertGraphsMatch(bundle: ModelBundle, s: OrtSessions): void {
  const m = bundle.manifest;
  const problems = [
    ...compareGraphIo(m.onnx.visionEncoder, s.vision),
    ...compareGraphIo(m.onnx.embedTokens, s.embed),
    ...compareGraphIo(m.onnx.decoder, s.decoder),
  ];
  if (problems.length > 0) {
    throw new ModelError(
      ErrorCode.ModelInvalid,
      `model bundle ${bundle.dir} does not match its graphs:\n  - ${problems.join('\n  - ')}`,
    );
  }
}
