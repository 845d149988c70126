import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MANIFEST_FORMAT_VERSION, type ModelManifest } from '../src/inference/model-manifest.js';
import { WeightSource } from './onnx/layers.js';
import {
  buildDecoder,
  buildEmbedTokens,
  buildVisionEncoder,
  selfAttentionLayers,
  type TinyTextConfig,
  type TinyVisionConfig,
} from './onnx/mllama-graphs.js';
import { tokenizerConfigJson, tokenizerIds, tokenizerJson } from './onnx/tokenizer-files.js';

/**
 * Writes the tiny random-weight Mllama test bundle (model-contract §4, §11.1). Deterministic from --seed:
 * every file is byte-identical on every run (the test regenerates it and compares sha256).
 * Usage: node dist/tools/make-fixture-model.js --out test/fixtures/models/tiny-mllama [--seed 42]
 */

export const FIXTURE_LABEL = 'test fixture — output is meaningless';
export const FIXTURE_NAME = 'radscribe-tiny-mllama-fixture';
export const DEFAULT_SEED = 42;
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

function stableJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}

export function generateFixtureBundle(outDir: string, seed = DEFAULT_SEED): ModelManifest {
  const ids = tokenizerIds();
  const text: TinyTextConfig = {
    hiddenSize: 32,
    numAttentionHeads: 4,
    numKeyValueHeads: 2,
    headDim: 8,
    intermediateSize: 64,
    numHiddenLayers: 3,
    crossAttentionLayers: [1],
    vocabSize: ids.vocabSize,
    embedRows: ids.vocabSize + 8,
    rmsNormEps: 1e-5,
    ropeTheta: 500000,
    maxPositionEmbeddings: 1024,
  };
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
  const eos = [ids.special['<|end_of_text|>'], ids.special['<|eom_id|>'], ids.special['<|eot_id|>']];
  const bos = ids.special['<|begin_of_text|>'];
  const pad = ids.special['<|finetune_right_pad_id|>'];

  // One weight stream per graph so changing one graph never shifts the others' weights.
  const files = new Map<string, Uint8Array | string>();
  files.set('onnx/vision_encoder.onnx', buildVisionEncoder(vision, text.hiddenSize, new WeightSource(seed)));
  files.set('onnx/embed_tokens.onnx', buildEmbedTokens(text, new WeightSource(seed + 1)));
  files.set('onnx/decoder_model_merged.onnx', buildDecoder(text, vision, new WeightSource(seed + 2)));

  // HF config.json key names (configuration_mllama.py) so real bundles share code paths.
  files.set(
    'config.json',
    stableJson({
      _comment: `RadScribe ${FIXTURE_LABEL}: tiny random-weight Mllama (seed ${seed}); not a real model.`,
      architectures: ['MllamaForConditionalGeneration'],
      model_type: 'mllama',
      image_token_index: ids.image,
      torch_dtype: 'float32',
      text_config: {
        model_type: 'mllama_text_model',
        hidden_size: text.hiddenSize,
        num_attention_heads: text.numAttentionHeads,
        num_key_value_heads: text.numKeyValueHeads,
        head_dim: text.headDim,
        intermediate_size: text.intermediateSize,
        num_hidden_layers: text.numHiddenLayers,
        cross_attention_layers: text.crossAttentionLayers,
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
      },
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
    }),
  );
  files.set(
    'generation_config.json',
    stableJson({ bos_token_id: bos, eos_token_id: eos, pad_token_id: pad, do_sample: false, max_new_tokens: 48 }),
  );
  files.set('tokenizer.json', stableJson(tokenizerJson()));
  files.set('tokenizer_config.json', stableJson(tokenizerConfigJson()));
  files.set('preprocessor_config.json', stableJson(PREPROCESSOR_CONFIG));

  mkdirSync(path.join(outDir, 'onnx'), { recursive: true });
  const fileEntries: ModelManifest['files'] = {};
  for (const [rel, content] of [...files.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const bytes = typeof content === 'string' ? Buffer.from(content, 'utf8') : content;
    writeFileSync(path.join(outDir, rel), bytes);
    fileEntries[rel] = { sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
  }

  const pastNames = selfAttentionLayers(text).flatMap((i) => [
    `past_key_values.${i}.key`,
    `past_key_values.${i}.value`,
  ]);
  const manifest: ModelManifest = {
    formatVersion: MANIFEST_FORMAT_VERSION,
    modelFamily: 'mllama',
    name: FIXTURE_NAME,
    version: `0.1.0-seed${seed}`,
    fixture: true,
    label: FIXTURE_LABEL,
    files: fileEntries,
    onnx: {
      visionEncoder: {
        path: 'onnx/vision_encoder.onnx',
        inputs: ['pixel_values', 'aspect_ratio_ids', 'aspect_ratio_mask'],
        outputs: ['cross_attention_states'],
      },
      embedTokens: { path: 'onnx/embed_tokens.onnx', inputs: ['input_ids'], outputs: ['inputs_embeds'] },
      decoder: {
        path: 'onnx/decoder_model_merged.onnx',
        inputs: [
          'inputs_embeds',
          'attention_mask',
          'position_ids',
          'cross_attention_states',
          'cross_attention_mask',
          ...pastNames,
        ],
        outputs: ['logits', ...pastNames.map((n) => n.replace('past_key_values', 'present'))],
      },
    },
    configFiles: {
      config: 'config.json',
      generationConfig: 'generation_config.json',
      tokenizer: 'tokenizer.json',
      tokenizerConfig: 'tokenizer_config.json',
      preprocessorConfig: 'preprocessor_config.json',
    },
    specialTokens: { bos, eos, pad, image: ids.image },
    crossAttentionLayers: [...text.crossAttentionLayers],
    imagePosition: 'before-text',
    prompt: PROMPT,
    generation: { doSample: false, maxNewTokens: 48 },
    provenance: {
      baseModel: null,
      adapter: null,
      weights: 'random (seeded); no training data',
      intendedUse: 'testing the RadScribe inference machinery only; output is meaningless',
      generator: 'tools/make-fixture-model.ts',
      seed,
    },
  };
  writeFileSync(path.join(outDir, 'manifest.json'), stableJson(manifest));
  return manifest;
}

function parseArgs(argv: readonly string[]): { out: string; seed: number } {
  let out: string | undefined;
  let seed = DEFAULT_SEED;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') out = argv[++i];
    else if (a === '--seed') seed = Number(argv[++i]);
    else throw new Error(`unknown argument ${a}`);
  }
  if (!out) throw new Error('usage: make-fixture-model --out <dir> [--seed N]');
  if (!Number.isInteger(seed) || seed < 0) throw new Error('--seed must be a non-negative integer');
  return { out, seed };
}

if (require.main === module) {
  const { out, seed } = parseArgs(process.argv.slice(2));
  const m = generateFixtureBundle(out, seed);
  const total = Object.values(m.files).reduce((a, f) => a + f.size, 0);
  process.stdout.write(`wrote ${m.name} ${m.version} to ${out} (${total} bytes)\n`);
}
