import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, ModelError, normalizeErrorString } from '../errors.js';
import {
  ImagePosition,
  MANIFEST_FORMAT_VERSION,
  ModelFamily,
  type ModelManifest,
  OnnxRole,
  PreprocessingKind,
  QUANTIZATION_OP,
  TensorDtype,
  WeightDtype,
} from './model-manifest.js';

/**
 * Loads and verifies a model bundle directory (model-contract §11.1–2: "validate against the manifest at
 * load and fail loudly"). Every problem is collected and reported once, naming the file (MONAI
 * ConfigurationValidator style), as a ModelError(model-invalid).
 */

export interface ModelBundle {
  /** Absolute bundle directory. */
  dir: string;
  manifest: ModelManifest;
  /** Absolute paths of the three graphs; sessions are created by path so external data resolves. */
  onnxPaths: Record<OnnxRole, string>;
  /** Parsed HF config.json. */
  config: Record<string, unknown>;
  generationConfig: Record<string, unknown>;
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  preprocessorConfig: Record<string, unknown>;
  /** Absolute path of preprocessor_config.json, for the tiler. */
  preprocessorConfigPath: string;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  // Streamed: real bundles carry multi-GB .onnx_data files that must not be read into one buffer.
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isIntArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => Number.isInteger(x));
}

/** Structural checks of manifest.json; returns problems, each prefixed with the field path. */
function checkManifestShape(m: Record<string, unknown>): string[] {
  const p: string[] = [];
  const need = (cond: boolean, msg: string) => {
    if (!cond) p.push(`manifest.json: ${msg}`);
  };
  need(m.formatVersion === MANIFEST_FORMAT_VERSION, `formatVersion must be ${MANIFEST_FORMAT_VERSION}`);
  need(
    Object.values(ModelFamily).includes(m.modelFamily as ModelFamily),
    `modelFamily must be one of ${Object.values(ModelFamily).join('|')}`,
  );
  need(typeof m.name === 'string' && m.name.length > 0, 'name must be a non-empty string');
  need(typeof m.version === 'string' && m.version.length > 0, 'version must be a non-empty string');
  need(typeof m.fixture === 'boolean', 'fixture must be a boolean');
  need(m.label === undefined || typeof m.label === 'string', 'label must be a string');
  need(typeof m.prompt === 'string' && m.prompt.length > 0, 'prompt must be a non-empty string');
  need(
    Object.values(ImagePosition).includes(m.imagePosition as ImagePosition),
    'imagePosition must be before-text|after-text',
  );
  need(isRecord(m.files), 'files must be an object');
  if (isRecord(m.files)) {
    for (const [rel, f] of Object.entries(m.files)) {
      const ok =
        isRecord(f) && typeof f.sha256 === 'string' && /^[0-9a-f]{64}$/.test(f.sha256) && Number.isInteger(f.size);
      need(ok, `files["${rel}"] needs sha256 (64 hex) and size`);
      need(
        !path.isAbsolute(rel) && !rel.split(/[\\/]/).includes('..'),
        `files["${rel}"] must be relative inside the bundle`,
      );
    }
  }
  need(isRecord(m.onnx), 'onnx must be an object');
  for (const role of Object.values(OnnxRole)) {
    const g = isRecord(m.onnx) ? m.onnx[role] : undefined;
    const ok = isRecord(g) && typeof g.path === 'string' && Array.isArray(g.inputs) && Array.isArray(g.outputs);
    need(ok, `onnx.${role} needs path, inputs, outputs`);
    if (!ok) continue;
    for (const kind of ['inputs', 'outputs'] as const) {
      (g[kind] as unknown[]).forEach((t, i) => {
        const valid =
          isRecord(t) &&
          typeof t.name === 'string' &&
          Object.values(TensorDtype).includes(t.dtype as TensorDtype) &&
          Array.isArray(t.dims) &&
          t.dims.every((d) => (typeof d === 'string' && d.length > 0) || (Number.isInteger(d) && (d as number) >= 0));
        need(valid, `onnx.${role}.${kind}[${i}] needs name, dtype (${Object.values(TensorDtype).join('|')}), dims`);
      });
    }
    need(
      g.weightDtype === undefined || Object.values(WeightDtype).includes(g.weightDtype as WeightDtype),
      `onnx.${role}.weightDtype must be one of ${Object.values(WeightDtype).join('|')}`,
    );
    const q = g.quantization;
    if (g.weightDtype === WeightDtype.Int4 || q !== undefined) {
      need(
        g.weightDtype === WeightDtype.Int4 &&
          isRecord(q) &&
          q.op === QUANTIZATION_OP &&
          q.bits === 4 &&
          Number.isInteger(q.blockSize) &&
          (q.blockSize as number) >= 16 &&
          ((q.blockSize as number) & ((q.blockSize as number) - 1)) === 0 &&
          typeof q.symmetric === 'boolean' &&
          Number.isInteger(q.matmuls) &&
          (q.matmuls as number) > 0,
        `onnx.${role}: weightDtype int4 and quantization {op: ${QUANTIZATION_OP}, bits: 4, blockSize (power of 2 >= 16), symmetric, matmuls > 0} go together`,
      );
    }
  }
  const pre = m.preprocessing;
  need(
    isRecord(pre) &&
      Object.values(PreprocessingKind).includes(pre.kind as PreprocessingKind) &&
      Number.isInteger(pre.imageSize) &&
      Number.isInteger(pre.maxTiles) &&
      Array.isArray(pre.mean) &&
      pre.mean.length === 3 &&
      Array.isArray(pre.std) &&
      pre.std.length === 3,
    'preprocessing needs kind, imageSize, maxTiles, mean[3], std[3]',
  );
  need(typeof m.chatTemplate === 'string' && m.chatTemplate.length > 0, 'chatTemplate must be a non-empty string');
  if (m.modelFamily === ModelFamily.EmbeddingMerge) {
    need(
      Number.isInteger(m.imageTokensPerImage) && (m.imageTokensPerImage as number) > 0,
      'imageTokensPerImage must be a positive integer for embedding-merge',
    );
  }
  need(isRecord(m.configFiles), 'configFiles must be an object');
  const st = m.specialTokens;
  need(
    isRecord(st) &&
      Number.isInteger(st.bos) &&
      isIntArray(st.eos) &&
      st.eos.length > 0 &&
      Number.isInteger(st.pad) &&
      Number.isInteger(st.image),
    'specialTokens needs bos, eos[], pad, image',
  );
  need(isIntArray(m.crossAttentionLayers), 'crossAttentionLayers must be an integer array');
  const gen = m.generation;
  need(
    isRecord(gen) &&
      typeof gen.doSample === 'boolean' &&
      (gen.noRepeatNgramSize === undefined ||
        (Number.isInteger(gen.noRepeatNgramSize) && (gen.noRepeatNgramSize as number) >= 0)) &&
      Number.isInteger(gen.maxNewTokens) &&
      (gen.maxNewTokens as number) > 0,
    'generation needs doSample and a positive maxNewTokens',
  );
  const prov = m.provenance;
  need(
    isRecord(prov) &&
      (prov.baseModel === null || typeof prov.baseModel === 'string') &&
      (prov.adapter === null ||
        (isRecord(prov.adapter) &&
          typeof prov.adapter.name === 'string' &&
          typeof prov.adapter.sha256 === 'string' &&
          /^[0-9a-f]{64}$/.test(prov.adapter.sha256))) &&
      typeof prov.trainingData === 'string' &&
      Array.isArray(prov.licences) &&
      typeof prov.intendedUse === 'string',
    'provenance needs baseModel, adapter {name, sha256} | null, trainingData, licences[], intendedUse',
  );
  return p;
}

async function readJson(file: string, rel: string, problems: string[]): Promise<Record<string, unknown>> {
  try {
    const v: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (isRecord(v)) return v;
    problems.push(`${rel}: not a JSON object`);
  } catch (err: unknown) {
    problems.push(`${rel}: unreadable (${normalizeErrorString(err)})`);
  }
  return {};
}

function fail(dir: string, problems: readonly string[]): never {
  throw new ModelError(ErrorCode.ModelInvalid, `model bundle ${dir} is invalid:\n  - ${problems.join('\n  - ')}`);
}

/** Result of inspecting a bundle: every problem found, and the bundle when none stops loading. */
export interface BundleInspection {
  dir: string;
  problems: string[];
  /** Present when the manifest parsed; then the files were hash-checked. */
  manifest?: ModelManifest;
  /** Present only when `problems` is empty. */
  bundle?: ModelBundle;
}

/**
 * Checks manifest shape, every file's presence, size and sha256, and the manifest against the HF configs.
 * Never throws for bundle problems: `radscribe model check` prints them all; `loadModelBundle` fails on them.
 */
export async function inspectModelBundle(bundleDir: string): Promise<BundleInspection> {
  const dir = path.resolve(bundleDir);
  const problems: string[] = [];
  const raw = await readJson(path.join(dir, 'manifest.json'), 'manifest.json', problems);
  if (problems.length > 0) return { dir, problems };
  problems.push(...checkManifestShape(raw));
  if (problems.length > 0) return { dir, problems };
  const manifest = raw as unknown as ModelManifest;

  // Every referenced file must be listed (so it is hashed), exist, and match size and sha256.
  const referenced = [...Object.values(manifest.onnx).map((g) => g.path), ...Object.values(manifest.configFiles)];
  for (const rel of referenced) {
    if (!(rel in manifest.files)) problems.push(`${rel}: referenced but not listed in manifest.json files`);
  }
  await Promise.all(
    Object.entries(manifest.files).map(async ([rel, f]) => {
      const abs = path.join(dir, rel);
      try {
        const s = await stat(abs);
        if (s.size !== f.size) problems.push(`${rel}: size ${s.size} != manifest ${f.size}`);
        else if ((await sha256File(abs)) !== f.sha256) problems.push(`${rel}: sha256 mismatch`);
      } catch (err: unknown) {
        problems.push(`${rel}: missing or unreadable (${normalizeErrorString(err)})`);
      }
    }),
  );
  problems.sort();

  const cf = manifest.configFiles;
  const configProblems: string[] = [];
  const config = await readJson(path.join(dir, cf.config), cf.config, configProblems);
  const generationConfig = await readJson(path.join(dir, cf.generationConfig), cf.generationConfig, configProblems);
  const tokenizerJson = await readJson(path.join(dir, cf.tokenizer), cf.tokenizer, configProblems);
  const tokenizerConfig = await readJson(path.join(dir, cf.tokenizerConfig), cf.tokenizerConfig, configProblems);
  const preprocessorConfig = await readJson(
    path.join(dir, cf.preprocessorConfig),
    cf.preprocessorConfig,
    configProblems,
  );
  // A missing file was already reported by the hash check; do not report it twice.
  for (const c of configProblems) if (!problems.some((x) => c.startsWith(x.split(':')[0] as string))) problems.push(c);

  // Cross-file consistency: the manifest must agree with the HF configs the graphs were built from.
  const imageTokenInConfig = config.image_token_index ?? config.image_token_id;
  if (manifest.modelFamily === ModelFamily.Mllama) {
    if (config.model_type !== 'mllama') problems.push(`${cf.config}: model_type must be "mllama"`);
    const textConfig = isRecord(config.text_config) ? config.text_config : {};
    if (JSON.stringify(textConfig.cross_attention_layers) !== JSON.stringify(manifest.crossAttentionLayers))
      problems.push(`${cf.config}: text_config.cross_attention_layers != manifest crossAttentionLayers`);
  } else if (manifest.crossAttentionLayers.length > 0) {
    problems.push('manifest.json: crossAttentionLayers must be [] for embedding-merge');
  }
  if (imageTokenInConfig !== manifest.specialTokens.image)
    problems.push(`${cf.config}: image_token_index != manifest specialTokens.image`);
  if (typeof tokenizerConfig.chat_template !== 'string') problems.push(`${cf.tokenizerConfig}: chat_template missing`);
  else if (tokenizerConfig.chat_template !== manifest.chatTemplate)
    problems.push(`${cf.tokenizerConfig}: chat_template differs from manifest chatTemplate`);
  if (typeof preprocessorConfig.image_processor_type !== 'string')
    problems.push(`${cf.preprocessorConfig}: image_processor_type missing`);
  if (problems.length > 0) return { dir, problems, manifest };

  const onnxPaths = Object.fromEntries(
    Object.values(OnnxRole).map((role) => [role, path.join(dir, manifest.onnx[role].path)]),
  ) as Record<OnnxRole, string>;
  return {
    dir,
    problems,
    manifest,
    bundle: {
      dir,
      manifest,
      onnxPaths,
      config,
      generationConfig,
      tokenizerJson,
      tokenizerConfig,
      preprocessorConfig,
      preprocessorConfigPath: path.join(dir, cf.preprocessorConfig),
    },
  };
}

export async function loadModelBundle(bundleDir: string): Promise<ModelBundle> {
  const r = await inspectModelBundle(bundleDir);
  if (!r.bundle) fail(r.dir, r.problems);
  return r.bundle;
}
