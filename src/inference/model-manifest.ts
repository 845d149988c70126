/**
 * manifest.json of a model bundle (model-contract §11.1): what the runtime needs to load, verify and drive
 * a bundle without guessing. HF files (config.json, tokenizer*.json, preprocessor_config.json,
 * generation_config.json) sit beside it and are listed in `files` with their hashes.
 */

export const MANIFEST_FORMAT_VERSION = 1;

/** Model families the runtime can drive (model-contract §9: cross-attention vs embedding-merge VLMs). */
export const ModelFamily = { Mllama: 'mllama' } as const;
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

export interface ManifestFile {
  sha256: string;
  size: number;
}

export interface OnnxGraphSpec {
  /** Path relative to the bundle directory. */
  path: string;
  inputs: string[];
  outputs: string[];
}

export interface GenerationDefaults {
  doSample: boolean;
  maxNewTokens: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
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
  specialTokens: { bos: number; eos: number[]; pad: number; image: number };
  crossAttentionLayers: number[];
  imagePosition: ImagePosition;
  prompt: string;
  generation: GenerationDefaults;
  provenance: {
    baseModel: string | null;
    adapter: string | null;
    weights: string;
    intendedUse: string;
    generator?: string;
    seed?: number;
  };
}
