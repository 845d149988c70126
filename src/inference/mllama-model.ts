import * as ort from 'onnxruntime-node';
import { ErrorCode, RadScribeError } from '../errors.js';
import { buildCrossAttentionMask } from './cross-attention-mask.js';
import { castFloat, floatTensor } from './float16.js';
import { type ImageGeometry, type ImageInput, numRealTiles, validateImageInput } from './image-input.js';
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
 * The cross-attention family (model-contract §2–§4, §11.1): vision_encoder → cross_attention_states
 * [B·imgs·tiles, 1601, H], fed to the decoder on every step with the raw int64 cross_attention_mask
 * [B, S, imgs, tiles] (v1 feeds states, not cross K/V, model-contract §11.7).
 */

class MllamaEncoding implements ImageEncoding {
  constructor(
    readonly states: ort.Tensor,
    readonly numTiles: readonly number[],
  ) {}
  get batch(): number {
    return this.numTiles.length;
  }
  dispose(): void {
    this.states.dispose();
  }
}

export class MllamaModel implements VisionLanguageModel {
  readonly family = ModelFamily.Mllama;
  private closed = false;
  private readonly runner = new TimedRunner();

  private constructor(
    private readonly s: OrtSessions,
    readonly kv: KvSpec,
    readonly vocabSize: number,
    readonly image: ImageGeometry,
    readonly imageTokenId: number,
    readonly dynamicBatch: boolean,
    readonly optionalDecoderInputs: ReadonlySet<string>,
    private readonly dtypes: {
      pixel: 'float32' | 'float16';
      embeds: 'float32' | 'float16';
      states: 'float32' | 'float16';
    },
  ) {}

  get provider(): ExecutionProvider {
    return this.s.provider;
  }

  get runMs(): number {
    return this.runner.runMs;
  }

  /** Decoder cache inputs, discovered from the session (model-contract §11.2). */
  get pastNames(): readonly string[] {
    return this.kv.names;
  }

  static async create(bundle: ModelBundle, opts: ModelOptions = {}): Promise<MllamaModel> {
    const s = await createSessions(bundle, opts);
    try {
      return MllamaModel.fromSessions(bundle, s);
    } catch (err: unknown) {
      await releaseSessions(s);
      throw err;
    }
  }

  static fromSessions(bundle: ModelBundle, s: OrtSessions): MllamaModel {
    assertGraphsMatch(bundle, s);
    const tc = bundle.config.text_config;
    const vc = bundle.config.vision_config;
    const file = 'config.json text_config';
    const heads = configNumber(tc, 'num_attention_heads', file);
    const hidden = configNumber(tc, 'hidden_size', file);
    const headDim =
      (tc as Record<string, unknown>).head_dim === undefined ? hidden / heads : configNumber(tc, 'head_dim', file);
    const kv = discoverKv(bundle, s.decoder, configNumber(tc, 'num_key_value_heads', file), headDim);
    const ratios = (vc as Record<string, unknown> | undefined)?.supported_aspect_ratios;
    const image: ImageGeometry = {
      maxTiles: configNumber(vc, 'max_num_tiles', 'config.json vision_config'),
      imageSize: configNumber(vc, 'image_size', 'config.json vision_config'),
      numChannels: configNumber(vc, 'num_channels', 'config.json vision_config'),
      maxAspectRatioId: Array.isArray(ratios) ? ratios.length : 8,
    };
    const dynamicBatch =
      hasDynamicBatch(s.vision, ['pixel_values', 'aspect_ratio_ids', 'aspect_ratio_mask']) &&
      hasDynamicBatch(s.embed, ['input_ids']) &&
      hasDynamicBatch(s.decoder, ['inputs_embeds', 'cross_attention_mask', ...kv.names]);
    const optional = new Set(
      s.decoder.inputNames.filter((n) => n === 'num_logits_to_keep' || n === 'use_cache_branch'),
    );
    return new MllamaModel(
      s,
      kv,
      configNumber(tc, 'vocab_size', file),
      image,
      bundle.manifest.specialTokens.image,
      dynamicBatch,
      optional,
      {
        pixel: floatTypeOf(s.vision, 'pixel_values'),
        embeds: floatTypeOf(s.decoder, 'inputs_embeds'),
        states: floatTypeOf(s.decoder, 'cross_attention_states'),
      },
    );
  }

  private assertOpen(): void {
    if (this.closed) throw new RadScribeError(ErrorCode.InferenceFailed, 'MllamaModel used after dispose');
  }

  validateImage(img: ImageInput): void {
    validateImageInput(img, this.image);
  }

  /** Mllama keeps the single <|image|> token: the image enters through cross-attention, not the stream. */
  expandPrompt(ids: readonly number[]): number[] {
    return [...ids];
  }

  /** vision_encoder → cross_attention_states [B·tiles, 1601, H] for B images (one per batch row). */
  async encodeImages(images: readonly ImageInput[]): Promise<MllamaEncoding> {
    this.assertOpen();
    const B = images.length;
    const T = this.image.maxTiles;
    const per = images[0]?.pixelValues.length ?? 0;
    const pixels = new Float32Array(B * per);
    images.forEach((img, b) => {
      pixels.set(img.pixelValues, b * per);
    });
    const dims = [B, 1, T, this.image.numChannels, this.image.imageSize, this.image.imageSize];
    const out = await this.runner.run(this.s.vision, 'vision_encoder', {
      pixel_values: floatTensor(this.dtypes.pixel, pixels, dims),
      aspect_ratio_ids: int64(
        images.map((i) => i.aspectRatioId ?? 0),
        [B, 1],
      ),
      aspect_ratio_mask: int64(
        images.flatMap((i) => i.aspectRatioMask ?? []),
        [B, 1, T],
      ),
    });
    const raw = out.cross_attention_states as ort.Tensor;
    const states = castFloat(raw, this.dtypes.states);
    if (states !== raw) raw.dispose();
    return new MllamaEncoding(
      states,
      images.map((i) => numRealTiles(i.aspectRatioMask ?? [])),
    );
  }

  async decoderInputs(
    enc: ImageEncoding,
    history: readonly (readonly number[])[],
    newCount: number,
  ): Promise<Record<string, ort.Tensor>> {
    this.assertOpen();
    const e = enc as MllamaEncoding;
    const B = history.length;
    const T = this.image.maxTiles;
    const ids: number[] = [];
    const mask = new BigInt64Array(B * newCount * T);
    history.forEach((row, b) => {
      ids.push(...row.slice(row.length - newCount));
      // The mask of the whole row, then its last newCount rows: for decode steps this is HF's "append the
      // last row again" (_update_model_kwargs_for_generation), since every generated token is in the span.
      const full = buildCrossAttentionMask(row, this.imageTokenId, [e.numTiles[b] ?? 0], T);
      mask.set(full.data.subarray((row.length - newCount) * T), b * newCount * T);
    });
    const embedOut = await this.runner.run(this.s.embed, 'embed_tokens', { input_ids: int64(ids, [B, newCount]) });
    const raw = embedOut.inputs_embeds as ort.Tensor;
    const embeds = castFloat(raw, this.dtypes.embeds);
    if (embeds !== raw) raw.dispose();
    return {
      inputs_embeds: embeds,
      cross_attention_states: e.states,
      cross_attention_mask: new ort.Tensor('int64', mask, [B, newCount, 1, T]),
    };
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
