/**
 * manifest.json of a model bundle (model-contract §11.1): what the runtime needs to load, verify and drive
 * a bundle without guessing. HF files (config.json, tokenizer*.json, preprocessor_config.json,
 * generation_config.json) sit beside it and are listed in `files` with their hashes. Documented field by
 * field in docs/model-bundle.md.
 */

export const MANIFEST_FORMAT_VERSION = 2;

/**
 * Model families the runtime can drive (model-contract §9: cross-attention vs embedding-merge VLMs).
 * - mllama: the image never becomes tokens; cross_attention_states feed gated cross-attention layers.
 * - embedding-merge: LLaVA / Gemma 3 / MedGemma / SmolVLM / Idefics3 style; image_features are scattered
 *   into inputs_embeds at the image-token positions (transformers.js `modeling_utils.js`).
 */
export const ModelFamily = { Mllama: 'mllama', EmbeddingMerge: 'embedding-merge' } as const;
export type ModelFamily = (typeof ModelFamily)[keyof typeof ModelFamily];

/** Where the image token sits relative to the prompt text in the user turn (model-contract §2.2 pitfall). */
export const ImagePosition = { BeforeText: 'before-text', AfterText: 'after-text' } as const;
export type ImagePosition = (typeof ImagePosition)[keyof typeof ImagePosition];

/** The three graphs of the transformers.js layout (model-contract §4). */
export const OnnxRole = {
  VisionEncoder: 'visionEncoder',
  EmbedTokens: 'embedTokens',
  Decoder: 'decoder',
} as const;
export type OnnxRole = (typeof OnnxRole)[keyof typeof OnnxRole];

/** Element types a bundle may declare (onnxruntime-common Tensor.Type names). */
export const TensorDtype = {
  Float32: 'float32',
  Float16: 'float16',
  Int64: 'int64',
  Int32: 'int32',
  Bool: 'bool',
} as const;
export type TensorDtype = (typeof TensorDtype)[keyof typeof TensorDtype];

/** How pixels become pixel_values (the plain path is SigLIP-style: one fixed-size resize, no tiles). */
export const PreprocessingKind = { MllamaTiles: 'mllama-tiles', ResizeNormalize: 'resize-normalize' } as const;
export type PreprocessingKind = (typeof PreprocessingKind)[keyof typeof PreprocessingKind];

export interface ManifestFile {
  sha256: string;
  size: number;
}

/** One graph input or output: dtype and shape, a string dim is symbolic (e.g. "batch"). */
export interface TensorSpec {
  name: string;
  dtype: TensorDtype;
  dims: Array<number | string>;
}

/**
 * What a graph's weights are stored as, independent of its I/O dtypes (a weight-only int4 decoder keeps float
 * inputs and outputs). Absent = the float type of its I/O.
 */
export const WeightDtype = { Float32: 'float32', Float16: 'float16', Int4: 'int4' } as const;
export type WeightDtype = (typeof WeightDtype)[keyof typeof WeightDtype];

/** The one weight quantization the runtime accepts: onnxruntime's com.microsoft MatMulNBits, 4 bits. */
export const QUANTIZATION_OP = 'com.microsoft.MatMulNBits';

/** How an int4 graph was quantized (tools/export/quantize_int4.py writes it; model check verifies it). */
export interface WeightQuantization {
  op: typeof QUANTIZATION_OP;
  bits: 4;
  /** Weights per block along K; one scale (and zero point when asymmetric) per block. */
  blockSize: number;
  symmetric: boolean;
  /** MatMul nodes replaced by MatMulNBits. */
  matmuls: number;
}

export interface OnnxGraphSpec {
  /** Path relative to the bundle directory. */
  path: string;
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  weightDtype?: WeightDtype;
  /** Required when weightDtype is int4. */
  quantization?: WeightQuantization;
}

export interface GenerationDefaults {
  doSample: boolean;
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  noRepeatNgramSize?: number;
}

/** A summary of preprocessor_config.json so operators can read it without opening HF files. */
export interface PreprocessingSpec {
  kind: PreprocessingKind;
  /** Tile (mllama) or full image (resize-normalize) side in pixels. */
  imageSize: number;
  maxTiles: number;
  mean: [number, number, number];
  std: [number, number, number];
  rescaleFactor: number;
  /** PIL filter id (2 = bilinear). */
  resample: number;
}

export interface Provenance {
  baseModel: string | null;
  /** LoRA or other adapter merged into the weights; sha256 of its safetensors file. */
  adapter: { name: string; sha256: string } | null;
  trainingData: string;
  licences: string[];
  intendedUse: string;
  weights: string;
  generator?: string;
  seed?: number;
  /** Written by tools/export/export_mllama.py since the dynamo path ran: the versions and, per graph, the exporter. */
  exporter?: ExporterRecord;
}

export interface ExporterRecord {
  torch: string;
  transformers: string;
  onnx: string;
  /** File name -> "dynamo opset 18" | "legacy TorchScript opset 17" (the tool falls back per graph). */
  graphs: Record<string, string>;
}

export interface ModelManifest {
  formatVersion: number;
  modelFamily: ModelFamily;
  name: string;
  version: string;
  fixture: boolean;
  label?: string;
  /** Optional DICOM Device UID for the SR's algorithm identification. */
  deviceUid?: string;
  /** Every other file in the bundle, path relative to the bundle → hash and size. */
  files: Record<string, ManifestFile>;
  onnx: Record<OnnxRole, OnnxGraphSpec>;
  configFiles: {
    config: string;
    generationConfig: string;
    tokenizer: string;
    tokenizerConfig: string;
    preprocessorConfig: string;
  };
  preprocessing: PreprocessingSpec;
  specialTokens: { bos: number; eos: number[]; pad: number; image: number };
  /** Jinja chat template; must equal tokenizer_config.json chat_template. */
  chatTemplate: string;
  /** mllama: decoder layers that cross-attend (they have no self KV cache). [] for embedding-merge. */
  crossAttentionLayers: number[];
  /** embedding-merge: rows of image_features per image = image tokens the prompt carries per image. */
  imageTokensPerImage?: number;
  imagePosition: ImagePosition;
  prompt: string;
  generation: GenerationDefaults;
  provenance: Provenance;
}
