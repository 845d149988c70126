import * as ort from 'onnxruntime-node';
import { ErrorCode, ModelError, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger } from '../logger.js';
import type { ImageGeometry, ImageInput } from './image-input.js';
import type { ModelBundle } from './model-bundle.js';
import { type OnnxGraphSpec, OnnxRole } from './model-manifest.js';

/**
 * Owns the three InferenceSessions of a Mllama bundle (model-contract §4, §11.6). Sessions are created by
 * path so external data resolves from disk. The provider is chosen by trying each requested EP alone, in
 * order: onnxruntime-node does not report which EP a multi-EP session ended up on, and a missing CUDA
 * provider library fails at create time (js-stack.md §1 "Execution providers").
 */

export const ExecutionProvider = { Cuda: 'cuda', Cpu: 'cpu' } as const;
export type ExecutionProvider = (typeof ExecutionProvider)[keyof typeof ExecutionProvider];

export interface MllamaModelOptions {
  executionProviders?: readonly ExecutionProvider[];
  intraOpNumThreads?: number;
}

export const DEFAULT_EXECUTION_PROVIDERS: readonly ExecutionProvider[] = [ExecutionProvider.Cpu];

const PAST_RE = /^past_key_values\.(\d+)\.(key|value)$/;
const log = childLogger('mllama-model');

export interface TextGeometry {
  kvHeads: number;
  headDim: number;
  vocabSize: number;
}

function num(record: unknown, key: string, file: string): number {
  const v = (record as Record<string, unknown> | undefined)?.[key];
  if (typeof v !== 'number') throw new ModelError(ErrorCode.ModelInvalid, `${file}: ${key} missing`);
  return v;
}

function checkIo(role: OnnxRole, spec: OnnxGraphSpec, session: ort.InferenceSession): string[] {
  const problems: string[] = [];
  for (const n of spec.inputs) if (!session.inputNames.includes(n)) problems.push(`${spec.path}: input ${n} missing`);
  for (const n of spec.outputs)
    if (!session.outputNames.includes(n)) problems.push(`${spec.path}: output ${n} missing`);
  for (const n of session.inputNames)
    if (!spec.inputs.includes(n)) problems.push(`${spec.path}: unexpected input ${n} (${role})`);
  return problems;
}

export class MllamaModel {
  private closed = false;

  private constructor(
    readonly provider: ExecutionProvider,
    private readonly vision: ort.InferenceSession,
    private readonly embed: ort.InferenceSession,
    private readonly decoder: ort.InferenceSession,
    /** Decoder cache inputs, discovered from the session (model-contract §11.2). */
    readonly pastNames: readonly string[],
    readonly text: TextGeometry,
    readonly image: ImageGeometry,
    readonly imageTokenId: number,
  ) {}

  static async create(bundle: ModelBundle, opts: MllamaModelOptions = {}): Promise<MllamaModel> {
    const eps = opts.executionProviders?.length ? opts.executionProviders : DEFAULT_EXECUTION_PROVIDERS;
    const failures: string[] = [];
    for (const ep of eps) {
      const sessionOptions: ort.InferenceSession.SessionOptions = {
        executionProviders: [ep],
        graphOptimizationLevel: 'all',
      };
      if (opts.intraOpNumThreads !== undefined) sessionOptions.intraOpNumThreads = opts.intraOpNumThreads;
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
      try {
        return MllamaModel.fromSessions(bundle, ep, vision, embed, decoder);
      } catch (err: unknown) {
        await Promise.all(sessions.map((s) => s.release()));
        throw err;
      }
    }
    throw new ModelError(
      ErrorCode.ModelInvalid,
      `no execution provider could load ${bundle.dir}: ${failures.join('; ')}`,
    );
  }

  private static fromSessions(
    bundle: ModelBundle,
    ep: ExecutionProvider,
    vision: ort.InferenceSession,
    embed: ort.InferenceSession,
    decoder: ort.InferenceSession,
  ): MllamaModel {
    const m = bundle.manifest;
    const problems = [
      ...checkIo(OnnxRole.VisionEncoder, m.onnx.visionEncoder, vision),
      ...checkIo(OnnxRole.EmbedTokens, m.onnx.embedTokens, embed),
      ...checkIo(OnnxRole.Decoder, m.onnx.decoder, decoder),
    ];
    const pastNames = decoder.inputNames.filter((n) => PAST_RE.test(n));
    for (const n of pastNames) {
      const layer = Number(PAST_RE.exec(n)?.[1]);
      if (m.crossAttentionLayers.includes(layer))
        problems.push(`${m.onnx.decoder.path}: ${n} is a cross-attention layer`);
      const present = n.replace('past_key_values.', 'present.');
      if (!decoder.outputNames.includes(present)) problems.push(`${m.onnx.decoder.path}: output ${present} missing`);
    }
    if (problems.length > 0) {
      throw new ModelError(
        ErrorCode.ModelInvalid,
        `model bundle ${bundle.dir} does not match its graphs:\n  - ${problems.join('\n  - ')}`,
      );
    }
    const tc = bundle.config.text_config;
    const vc = bundle.config.vision_config;
    const heads = num(tc, 'num_attention_heads', 'config.json text_config');
    const hidden = num(tc, 'hidden_size', 'config.json text_config');
    const text: TextGeometry = {
      kvHeads: num(tc, 'num_key_value_heads', 'config.json text_config'),
      headDim:
        (tc as Record<string, unknown>).head_dim === undefined
          ? hidden / heads
          : num(tc, 'head_dim', 'config.json text_config'),
      vocabSize: num(tc, 'vocab_size', 'config.json text_config'),
    };
    const ratios = (vc as Record<string, unknown> | undefined)?.supported_aspect_ratios;
    const image: ImageGeometry = {
      maxTiles: num(vc, 'max_num_tiles', 'config.json vision_config'),
      imageSize: num(vc, 'image_size', 'config.json vision_config'),
      numChannels: num(vc, 'num_channels', 'config.json vision_config'),
      maxAspectRatioId: Array.isArray(ratios) ? ratios.length : 8,
    };
    return new MllamaModel(ep, vision, embed, decoder, pastNames, text, image, m.specialTokens.image);
  }

  private assertOpen(): void {
    if (this.closed) throw new RadScribeError(ErrorCode.InferenceFailed, 'MllamaModel used after dispose');
  }

  /** vision_encoder → cross_attention_states [imgs·tiles, 1601, H]. */
  async encodeImage(img: ImageInput): Promise<ort.Tensor> {
    this.assertOpen();
    const out = await this.run(this.vision, 'vision_encoder', {
      pixel_values: new ort.Tensor('float32', img.pixelValues, img.dims),
      aspect_ratio_ids: new ort.Tensor('int64', BigInt64Array.of(BigInt(img.aspectRatioId)), [1, 1]),
      aspect_ratio_mask: new ort.Tensor(
        'int64',
        BigInt64Array.from(img.aspectRatioMask, (v) => BigInt(v)),
        [1, 1, img.aspectRatioMask.length],
      ),
    });
    return out.cross_attention_states as ort.Tensor;
  }

  /** embed_tokens → inputs_embeds [1, S, H]. */
  async embedTokens(ids: readonly number[]): Promise<ort.Tensor> {
    this.assertOpen();
    const out = await this.run(this.embed, 'embed_tokens', {
      input_ids: new ort.Tensor(
        'int64',
        BigInt64Array.from(ids, (v) => BigInt(v)),
        [1, ids.length],
      ),
    });
    return out.inputs_embeds as ort.Tensor;
  }

  /** One decoder_model_merged pass; returns logits and present.*. */
  async decode(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    this.assertOpen();
    return this.run(this.decoder, 'decoder_model_merged', feeds);
  }

  private async run(
    session: ort.InferenceSession,
    graph: string,
    feeds: Record<string, ort.Tensor>,
  ): Promise<Record<string, ort.Tensor>> {
    try {
      return (await session.run(feeds)) as Record<string, ort.Tensor>;
    } catch (err: unknown) {
      throw new RadScribeError(
        ErrorCode.InferenceFailed,
        `onnxruntime run of ${graph} failed: ${normalizeErrorString(err)}`,
        { cause: err },
      );
    }
  }

  /** Idempotent. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([this.vision.release(), this.embed.release(), this.decoder.release()]);
  }
}
