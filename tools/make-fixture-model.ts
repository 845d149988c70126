import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import {
  MANIFEST_FORMAT_VERSION,
  type ModelFamily,
  type ModelManifest,
  type OnnxGraphSpec,
} from '../src/inference/model-manifest.js';
import type { IoSpec } from './onnx/graph-builder.js';
import { WeightSource } from './onnx/layers.js';
import {
  buildMergeDecoder,
  buildMergeVisionEncoder,
  mergeTokensPerImage,
  type TinyMergeVisionConfig,
} from './onnx/merge-graphs.js';
import {
  type BuiltGraph,
  buildDecoder,
  buildEmbedTokens,
  buildVisionEncoder,
  type TinyTextConfig,
  type TinyVisionConfig,
} from './onnx/mllama-graphs.js';
import { CHAT_TEMPLATE, tokenizerConfigJson, tokenizerIds, tokenizerJson } from './onnx/tokenizer-files.js';

/**
 * Writes tiny random-weight test bundles for both model families (model-contract §4, §11.1):
 * - mllama (cross-attention; the seed's architecture), committed as test/fixtures/models/tiny-mllama;
 * - embedding-merge (LLaVA / Gemma 3 style), committed as test/fixtures/models/tiny-merge-vlm.
 * Deterministic from --seed: every file is byte-identical on every run (a test regenerates both and compares
 * sha256). `--float-io float16` writes the fp16-I/O variant (tests build it in a temp dir); `--layers` and
 * `--hidden` size a realistic-depth random model for the CPU benchmark.
 * Usage: node dist/tools/make-fixture-model.js --out <dir> [--family mllama|embedding-merge] [--seed 42]
 *        [--float-io float32|float16] [--layers N] [--hidden N]
 */

export const FIXTURE_LABEL = 'test fixture — output is meaningless';
export const FIXTURE_NAME = 'radscribe-tiny-mllama-fixture';
export const MERGE_FIXTURE_NAME = 'radscribe-tiny-merge-vlm-fixture';
export const DEFAULT_SEED = 42;
/** 0.3.0: cross-attention masking follows HF, not Meta (transformers #39379). */
const MLLAMA_FIXTURE_VERSION = '0.3.0';
const MERGE_FIXTURE_VERSION = '0.2.0';
const PROMPT = 'You are an expert radiographer. Describe accurately what you see in this image.';

/** Real Mllama-Instruct preprocessing values (model-contract §1.1), so the tiler runs its production path. */
const PREPROCESSOR_CONFIG = {
  image_processor_type: 'MllamaImageProcessor',
  processor_class: 'MllamaProcessor',
  do_convert_rgb: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  max_image_tiles: 4,
  resample: 2,
  rescale_factor: 1 / 255,
  size: { height: 560, width: 560 },
};

/** SigLIP-style plain resize + normalise (Gemma 3 / MedGemma preprocessor_config.json keys), at a tiny size. */
const MERGE_IMAGE_SIZE = 224;
const MERGE_PREPROCESSOR_CONFIG = {
  image_processor_type: 'SiglipImageProcessor',
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  rescale_factor: 1 / 255,
  size: { height: MERGE_IMAGE_SIZE, width: MERGE_IMAGE_SIZE },
};

const SUPPORTED_ASPECT_RATIOS = [
  [1, 1],
  [1, 2],
  [1, 3],
  [1, 4],
  [2, 1],
  [2, 2],
  [3, 1],
  [4, 1],
];

export interface FixtureOptions {
  family?: ModelFamily;
  seed?: number;
  /** float16 declares every float graph input/output as float16 (compute stays float32 inside). */
  floatIo?: 'float32' | 'float16';
  /** Text decoder depth and width overrides (benchmark bundles). */
  layers?: number;
  hidden?: number;
}

function stableJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

function textConfig(vocabSize: number, family: ModelFamily, o: FixtureOptions): TinyTextConfig {
  const hidden = o.hidden ?? 32;
  const layers = o.layers ?? 3;
  const heads = Math.max(4, hidden / 32);
  // Mllama puts a cross layer every 5th layer from 3 (model-contract §3); the tiny one has layer 1.
  const cross =
    family === 'mllama'
      ? o.layers === undefined
        ? [1]
        : Array.from({ length: layers }, (_, i) => i).filter((i) => i % 5 === 3)
      : [];
  return {
    hiddenSize: hidden,
    numAttentionHeads: heads,
    numKeyValueHeads: heads / 2,
    headDim: hidden / heads,
    intermediateSize: hidden * 2,
    numHiddenLayers: layers,
    crossAttentionLayers: cross,
    vocabSize,
    embedRows: vocabSize + 8,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    maxPositionEmbeddings: 1024,
  };
}

function graphSpec(rel: string, g: BuiltGraph): OnnxGraphSpec {
  const copy = (t: IoSpec) => ({ name: t.name, dtype: t.dtype, dims: [...t.dims] });
  return { path: rel, inputs: g.io.inputs.map(copy), outputs: g.io.outputs.map(copy) };
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function generateFixtureBundle(outDir: string, optsOrSeed: FixtureOptions | number = {}): ModelManifest {
  const o: FixtureOptions = typeof optsOrSeed === 'number' ? { seed: optsOrSeed } : optsOrSeed;
  const family: ModelFamily = o.family ?? 'mllama';
  const seed = o.seed ?? DEFAULT_SEED;
  const floatIo = o.floatIo ?? 'float32';
  const ids = tokenizerIds();
  const text = textConfig(ids.vocabSize, family, o);
  const eos = [ids.special['<|end_of_text|>'], ids.special['<|eom_id|>'], ids.special['<|eot_id|>']];
  const bos = ids.special['<|begin_of_text|>'];
  const pad = ids.special['<|finetune_right_pad_id|>'];
  const gopts = { floatIo };
  const textJson = {
    hidden_size: text.hiddenSize,
    num_attention_heads: text.numAttentionHeads,
    num_key_value_heads: text.numKeyValueHeads,
    head_dim: text.headDim,
    intermediate_size: text.intermediateSize,
    num_hidden_layers: text.numHiddenLayers,
    vocab_size: text.vocabSize,
    rms_norm_eps: text.rmsNormEps,
    rope_theta: text.ropeTheta,
    rope_scaling: null,
    max_position_embeddings: text.maxPositionEmbeddings,
    hidden_act: 'silu',
    bos_token_id: bos,
    eos_token_id: eos,
    pad_token_id: pad,
    tie_word_embeddings: false,
  };
  const torchDtype = floatIo === 'float16' ? 'float16' : 'float32';
  const sizeNote = o.layers === undefined && o.hidden === undefined ? 'tiny' : `${text.numHiddenLayers}-layer`;
  const comment = `RadScribe ${FIXTURE_LABEL}: ${sizeNote} random-weight ${family} (seed ${seed}, ${floatIo} I/O); not a real model.`;

  // One weight stream per graph so changing one graph never shifts the others' weights.
  let graphs: { visionEncoder: BuiltGraph; embedTokens: BuiltGraph; decoder: BuiltGraph };
  let config: Record<string, unknown>;
  let preprocessorConfig: Record<string, unknown>;
  let preprocessing: ModelManifest['preprocessing'];
  let imageTokensPerImage: number | undefined;
  if (family === 'mllama') {
    const vision: TinyVisionConfig = {
      hiddenSize: 16,
      intermediateSize: 32,
      imageSize: 560,
      patchSize: 14,
      numChannels: 3,
      maxNumTiles: 4,
      maxAspectRatioId: SUPPORTED_ASPECT_RATIOS.length,
      normEps: 1e-5,
    };
    graphs = {
      visionEncoder: buildVisionEncoder(vision, text.hiddenSize, new WeightSource(seed), gopts),
      embedTokens: buildEmbedTokens(text, new WeightSource(seed + 1), gopts),
      decoder: buildDecoder(text, vision, new WeightSource(seed + 2), gopts),
    };
    // HF config.json key names (configuration_mllama.py) so real bundles share code paths.
    config = {
      _comment: comment,
      architectures: ['MllamaForConditionalGeneration'],
      model_type: 'mllama',
      image_token_index: ids.image,
      torch_dtype: torchDtype,
      text_config: { model_type: 'mllama_text_model', ...textJson, cross_attention_layers: text.crossAttentionLayers },
      vision_config: {
        model_type: 'mllama_vision_model',
        hidden_size: vision.hiddenSize,
        intermediate_size: vision.intermediateSize,
        image_size: vision.imageSize,
        patch_size: vision.patchSize,
        num_channels: vision.numChannels,
        max_num_tiles: vision.maxNumTiles,
        norm_eps: vision.normEps,
        hidden_act: 'quick_gelu',
        num_hidden_layers: 1,
        num_global_layers: 0,
        intermediate_layers_indices: [],
        vision_output_dim: vision.hiddenSize,
        supported_aspect_ratios: SUPPORTED_ASPECT_RATIOS,
      },
    };
    preprocessorConfig = PREPROCESSOR_CONFIG;
    preprocessing = {
      kind: 'mllama-tiles',
      imageSize: 560,
      maxTiles: 4,
      mean: [0.48145466, 0.4578275, 0.40821073],
      std: [0.26862954, 0.26130258, 0.27577711],
      rescaleFactor: 1 / 255,
      resample: 2,
    };
  } else {
    const vision: TinyMergeVisionConfig = {
      hiddenSize: 16,
      intermediateSize: 32,
      imageSize: MERGE_IMAGE_SIZE,
      patchSize: 28,
      numChannels: 3,
      normEps: 1e-6,
    };
    imageTokensPerImage = mergeTokensPerImage(vision);
    graphs = {
      visionEncoder: buildMergeVisionEncoder(vision, text.hiddenSize, new WeightSource(seed), gopts),
      embedTokens: buildEmbedTokens(text, new WeightSource(seed + 1), gopts, 'merge_embed_tokens'),
      decoder: buildMergeDecoder(text, new WeightSource(seed + 2), gopts),
    };
    // LLaVA / Gemma 3 style config.json (image_token_index, mm_tokens_per_image, text_config, vision_config).
    config = {
      _comment: comment,
      architectures: ['LlavaForConditionalGeneration'],
      model_type: 'llava',
      image_token_index: ids.image,
      mm_tokens_per_image: imageTokensPerImage,
      torch_dtype: torchDtype,
      text_config: { model_type: 'llama', ...textJson },
      vision_config: {
        model_type: 'siglip_vision_model',
        hidden_size: vision.hiddenSize,
        intermediate_size: vision.intermediateSize,
        image_size: vision.imageSize,
        patch_size: vision.patchSize,
        num_channels: vision.numChannels,
        layer_norm_eps: vision.normEps,
        num_hidden_layers: 1,
      },
    };
    preprocessorConfig = MERGE_PREPROCESSOR_CONFIG;
    preprocessing = {
      kind: 'resize-normalize',
      imageSize: MERGE_IMAGE_SIZE,
      maxTiles: 1,
      mean: [0.5, 0.5, 0.5],
      std: [0.5, 0.5, 0.5],
      rescaleFactor: 1 / 255,
      resample: 2,
    };
  }

  const onnxPaths = {
    visionEncoder: 'onnx/vision_encoder.onnx',
    embedTokens: 'onnx/embed_tokens.onnx',
    decoder: 'onnx/decoder_model_merged.onnx',
  } as const;
  const files = new Map<string, Uint8Array | string>();
  files.set(onnxPaths.visionEncoder, graphs.visionEncoder.bytes);
  files.set(onnxPaths.embedTokens, graphs.embedTokens.bytes);
  files.set(onnxPaths.decoder, graphs.decoder.bytes);
  files.set('config.json', stableJson(config));
  files.set(
    'generation_config.json',
    stableJson({ bos_token_id: bos, eos_token_id: eos, pad_token_id: pad, do_sample: false, max_new_tokens: 48 }),
  );
  files.set('tokenizer.json', stableJson(tokenizerJson()));
  files.set('tokenizer_config.json', stableJson(tokenizerConfigJson()));
  files.set('preprocessor_config.json', stableJson(preprocessorConfig));

  mkdirSync(path.join(outDir, 'onnx'), { recursive: true });
  const fileEntries: ModelManifest['files'] = {};
  for (const [rel, content] of [...files.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    writeFileSync(path.join(outDir, rel), bytes);
    fileEntries[rel] = { sha256: sha256(bytes), size: bytes.length };
  }

  const isMllama = family === 'mllama';
  const manifest: ModelManifest = {
    formatVersion: MANIFEST_FORMAT_VERSION,
    modelFamily: family,
    name: isMllama ? FIXTURE_NAME : MERGE_FIXTURE_NAME,
    version: `${isMllama ? MLLAMA_FIXTURE_VERSION : MERGE_FIXTURE_VERSION}-seed${seed}${floatIo === 'float16' ? '-f16io' : ''}`,
    fixture: true,
    label: FIXTURE_LABEL,
    files: fileEntries,
    onnx: {
      visionEncoder: graphSpec(onnxPaths.visionEncoder, graphs.visionEncoder),
      embedTokens: graphSpec(onnxPaths.embedTokens, graphs.embedTokens),
      decoder: graphSpec(onnxPaths.decoder, graphs.decoder),
    },
    configFiles: {
      config: 'config.json',
      generationConfig: 'generation_config.json',
      tokenizer: 'tokenizer.json',
      tokenizerConfig: 'tokenizer_config.json',
      preprocessorConfig: 'preprocessor_config.json',
    },
    preprocessing,
    specialTokens: { bos, eos, pad, image: ids.image },
    chatTemplate: CHAT_TEMPLATE,
    crossAttentionLayers: [...text.crossAttentionLayers],
    ...(imageTokensPerImage !== undefined ? { imageTokensPerImage } : {}),
    imagePosition: 'before-text',
    prompt: PROMPT,
    generation: { doSample: false, maxNewTokens: 48 },
    provenance: {
      baseModel: null,
      adapter: null,
      trainingData: 'none (random weights)',
      licences: ['Apache-2.0 (RadScribe test fixture)'],
      intendedUse: 'testing the RadScribe inference machinery only; output is meaningless',
      weights: 'random (seeded); no training data',
      generator: 'tools/make-fixture-model.ts',
      seed,
    },
  };
  writeFileSync(path.join(outDir, 'manifest.json'), stableJson(manifest));
  return manifest;
}

function parseArgs(argv: readonly string[]): { out: string; opts: FixtureOptions } {
  let out: string | undefined;
  const opts: FixtureOptions = {};
  const int = (v: string | undefined, name: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a non-negative integer`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') out = argv[++i];
    else if (a === '--seed') opts.seed = int(argv[++i], '--seed');
    else if (a === '--layers') opts.layers = int(argv[++i], '--layers');
    else if (a === '--hidden') opts.hidden = int(argv[++i], '--hidden');
    else if (a === '--family') {
      const f = argv[++i];
      if (f !== 'mllama' && f !== 'embedding-merge') throw new Error('--family must be mllama|embedding-merge');
      opts.family = f;
    } else if (a === '--float-io') {
      const f = argv[++i];
      if (f !== 'float32' && f !== 'float16') throw new Error('--float-io must be float32|float16');
      opts.floatIo = f;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!out)
    throw new Error(
      'usage: make-fixture-model --out <dir> [--family F] [--seed N] [--float-io T] [--layers N] [--hidden N]',
    );
  return { out, opts };
}

if (require.main === module) {
  const { out, opts } = parseArgs(process.argv.slice(2));
  const m = generateFixtureBundle(out, opts);
  const total = Object.values(m.files).reduce((a, f) => a + f.size, 0);
  process.stdout.write(`wrote ${m.name} ${m.version} to ${out} (${total} bytes)\n`);
}
