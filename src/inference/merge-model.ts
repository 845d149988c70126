import type * as ort from 'onnxruntime-node';
import { ErrorCode, ModelError, RadScribeError } from '../errors.js';
import { castFloat, floatTensor } from './float16.js';
import { type ImageInput, validatePlainImageInput } from './image-input.js';
import type { ModelBundle } from './model-bundle.js';
import { ModelFamily } from './model-manifest.js';
import {
  assertGraphsMatch,
  configNumber,
  createSessions,
  discoverKv,
  type ExecutionProvider,
  floatTypeOf,
  hasDynamicBatch,
  type ImageEncoding,
  int64,
  type KvSpec,
  type ModelOptions,
  type OrtSessions,
  releaseSessions,
  TimedRunner,
  type VisionLanguageModel,
} from './vision-language-model.js';

/**
 * The embedding-merge family (LLaVA, Gemma 3 / MedGemma, SmolVLM, Idefics3; model-contract §4, §9):
 * vision_encoder → image_features [B, N, H]; the prompt carries N image tokens per image; embed_tokens gives
 * inputs_embeds and the image features replace the rows at the image-token positions (transformers.js
 * `modeling_utils.js` merge step); decoder_model_merged then runs like a text-only Llama with past KV.
 * Gemma 3's bidirectional attention among image tokens and Qwen2-VL's 3-D mRoPE are not covered (the
 * graphs would need extra inputs); SmolVLM/Idefics3 image splitting is a preprocessing concern.
 */

class MergeEncoding implements ImageEncoding {
  constructor(
    /** [B, N, H] as float32 values, row-major. */
    readonly features: Float32Array,
    readonly batch: number,
    readonly tokensPerImage: number,
    readonly hidden: number,
  ) {}
  dispose(): void {}
}

export class EmbeddingMergeModel implements VisionLanguageModel {
  readonly family = ModelFamily.EmbeddingMerge;
  private closed = false;
  private readonly runner = new TimedRunner();

  private constructor(
    private readonly s: OrtSessions,
    readonly kv: KvSpec,
    readonly vocabSize: number,
    readonly imageTokenId: number,
    readonly tokensPerImage: number,
    readonly hidden: number,
    private readonly channels: number,
    readonly imageSize: number,
    readonly dynamicBatch: boolean,
    readonly optionalDecoderInputs: ReadonlySet<string>,
    private readonly dtypes: { pixel: 'float32' | 'float16'; embeds: 'float32' | 'float16' },
  ) {}

  get provider(): ExecutionProvider {
    return this.s.provider;
  }

  get runMs(): number {
    return this.runner.runMs;
  }

  static async create(bundle: ModelBundle, opts: ModelOptions = {}): Promise<EmbeddingMergeModel> {
    const s = await createSessions(bundle, opts);
    try {
      return EmbeddingMergeModel.fromSessions(bundle, s);
    } catch (err: unknown) {
      await releaseSessions(s);
      throw err;
    }
  }

  static fromSessions(bundle: ModelBundle, s: OrtSessions): EmbeddingMergeModel {
    assertGraphsMatch(bundle, s);
    const m = bundle.manifest;
    const tc = bundle.config.text_config;
    const file = 'config.json text_config';
    const heads = configNumber(tc, 'num_attention_heads', file);
    const hidden = configNumber(tc, 'hidden_size', file);
    const headDim =
      (tc as Record<string, unknown>).head_dim === undefined ? hidden / heads : configNumber(tc, 'head_dim', file);
    const kv = discoverKv(bundle, s.decoder, configNumber(tc, 'num_key_value_heads', file), headDim);
    const pixelDims = s.vision.inputMetadata.find((x) => x.name === 'pixel_values');
    const shape = pixelDims?.isTensor ? pixelDims.shape : [];
    if (shape.length !== 4 || typeof shape[1] !== 'number' || typeof shape[2] !== 'number' || shape[2] !== shape[3])
      throw new ModelError(
        ErrorCode.ModelInvalid,
        `${m.onnx.visionEncoder.path}: pixel_values must be [batch, C, S, S] with fixed C and S`,
      );
    if (shape[2] !== m.preprocessing.imageSize)
      throw new ModelError(
        ErrorCode.ModelInvalid,
        `${m.onnx.visionEncoder.path}: pixel_values side ${shape[2]} != manifest preprocessing.imageSize ${m.preprocessing.imageSize}`,
      );
    const dynamicBatch =
      hasDynamicBatch(s.vision, ['pixel_values']) &&
      hasDynamicBatch(s.embed, ['input_ids']) &&
      hasDynamicBatch(s.decoder, ['inputs_embeds', ...kv.names]);
    const optional = new Set(
      s.decoder.inputNames.filter((n) => n === 'num_logits_to_keep' || n === 'use_cache_branch'),
    );
    return new EmbeddingMergeModel(
      s,
      kv,
      configNumber(tc, 'vocab_size', file),
      m.specialTokens.image,
      m.imageTokensPerImage ?? 0,
      hidden,
      shape[1],
      shape[2],
      dynamicBatch,
      optional,
      { pixel: floatTypeOf(s.vision, 'pixel_values'), embeds: floatTypeOf(s.decoder, 'inputs_embeds') },
    );
  }

  private assertOpen(): void {
    if (this.closed) throw new RadScribeError(ErrorCode.InferenceFailed, 'EmbeddingMergeModel used after dispose');
  }

  validateImage(img: ImageInput): void {
    validatePlainImageInput(img, this.channels, this.imageSize);
  }

  /** Each image token becomes tokensPerImage image tokens (LLaVA / Gemma 3 processors expand it likewise). */
  expandPrompt(ids: readonly number[]): number[] {
    return ids.flatMap((id) => (id === this.imageTokenId ? new Array<number>(this.tokensPerImage).fill(id) : [id]));
  }

  async encodeImages(images: readonly ImageInput[]): Promise<MergeEncoding> {
    this.assertOpen();
    const B = images.length;
    const per = this.channels * this.imageSize * this.imageSize;
    const pixels = new Float32Array(B * per);
    images.forEach((img, b) => {
      pixels.set(img.pixelValues, b * per);
    });
    const out = await this.runner.run(this.s.vision, 'vision_encoder', {
      pixel_values: floatTensor(this.dtypes.pixel, pixels, [B, this.channels, this.imageSize, this.imageSize]),
    });
    const raw = out.image_features as ort.Tensor;
    const f32 = castFloat(raw, 'float32');
    const [b, n, h] = f32.dims as [number, number, number];
    if (b !== B || n !== this.tokensPerImage || h !== this.hidden) {
      raw.dispose();
      throw new RadScribeError(
        ErrorCode.InferenceFailed,
        `vision_encoder returned image_features [${f32.dims.join(',')}], expected [${B},${this.tokensPerImage},${this.hidden}]`,
      );
    }
    const features = (f32.data as Float32Array).slice();
    raw.dispose();
    return new MergeEncoding(features, B, n, h);
  }

  async decoderInputs(
    enc: ImageEncoding,
    history: readonly (readonly number[])[],
    newCount: number,
  ): Promise<Record<string, ort.Tensor>> {
    this.assertOpen();
    const e = enc as MergeEncoding;
    const B = history.length;
    const ids = history.flatMap((row) => row.slice(row.length - newCount));
    const embedOut = await this.runner.run(this.s.embed, 'embed_tokens', { input_ids: int64(ids, [B, newCount]) });
    const raw = embedOut.inputs_embeds as ort.Tensor;
    const H = this.hidden;
    // Image-token positions of this slice, per row; the features replace those rows in order.
    const positions = history.map((_, b) => {
      const p: number[] = [];
      for (let i = 0; i < newCount; i++) if (ids[b * newCount + i] === this.imageTokenId) p.push(i);
      return p;
    });
    if (positions.every((p) => p.length === 0)) {
      const embeds = castFloat(raw, this.dtypes.embeds);
      if (embeds !== raw) raw.dispose();
      return { inputs_embeds: embeds };
    }
    const values = castFloat(raw, 'float32');
    const data = values === raw ? (raw.data as Float32Array) : (values.data as Float32Array);
    positions.forEach((p, b) => {
      if (p.length !== e.tokensPerImage)
        throw new RadScribeError(
          ErrorCode.InferenceFailed,
          `prompt row ${b} has ${p.length} image tokens, the image gives ${e.tokensPerImage} features`,
        );
      p.forEach((pos, k) => {
        const src = (b * e.tokensPerImage + k) * H;
        data.set(e.features.subarray(src, src + H), (b * newCount + pos) * H);
      });
    });
    const embeds = floatTensor(this.dtypes.embeds, data, [B, newCount, H]);
    raw.dispose();
    return { inputs_embeds: embeds };
  }

  async decode(feeds: Record<string, ort.Tensor>): Promise<Record<string, ort.Tensor>> {
    this.assertOpen();
    return this.runner.run(this.s.decoder, 'decoder_model_merged', feeds);
  }

  /** Idempotent. */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await releaseSessions(this.s);
  }
}
