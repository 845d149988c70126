import { cpSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, ModelError } from '../../../src/errors.js';
import { loadModelBundle } from '../../../src/inference/model-bundle.js';
import { TINY_MLLAMA_DIR } from './helpers.js';

describe('loadModelBundle', () => {
  let work: string;
  beforeEach(() => {
    work = mkdtempSync(path.join(tmpdir(), 'bundle-'));
    cpSync(TINY_MLLAMA_DIR, work, { recursive: true });
  });
  afterEach(() => rmSync(work, { recursive: true, force: true }));

  async function expectInvalid(naming: string[]): Promise<ModelError> {
    const err = await loadModelBundle(work).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ModelError);
    const me = err as ModelError;
    expect(me.code).toBe(ErrorCode.ModelInvalid);
    for (const n of naming) expect(me.message).toContain(n);
    return me;
  }

  it('loads the committed fixture, verifies hashes and exposes configs', async () => {
    const b = await loadModelBundle(TINY_MLLAMA_DIR);
    expect(b.manifest.modelFamily).toBe('mllama');
    expect(b.manifest.fixture).toBe(true);
    expect(b.manifest.label).toBe('test fixture — output is meaningless');
    expect(b.manifest.name).toContain('fixture');
    expect(b.config.model_type).toBe('mllama');
    expect(b.config.image_token_index).toBe(b.manifest.specialTokens.image);
    expect(b.preprocessorConfig.image_processor_type).toBe('MllamaImageProcessor');
    expect(b.preprocessorConfig.max_image_tiles).toBe(4);
    expect(b.preprocessorConfigPath).toBe(path.join(TINY_MLLAMA_DIR, 'preprocessor_config.json'));
    expect(b.onnxPaths.decoder).toBe(path.join(TINY_MLLAMA_DIR, 'onnx', 'decoder_model_merged.onnx'));
    expect(b.manifest.imagePosition).toBe('before-text');
    expect(Object.keys(b.manifest.files).sort()).toEqual(
      [
        'config.json',
        'generation_config.json',
        'onnx/decoder_model_merged.onnx',
        'onnx/embed_tokens.onnx',
        'onnx/vision_encoder.onnx',
        'preprocessor_config.json',
        'tokenizer.json',
        'tokenizer_config.json',
      ].sort(),
    );
  });

  it('fails naming a corrupted file (same size, different bytes)', async () => {
    const f = path.join(work, 'onnx', 'decoder_model_merged.onnx');
    const bytes = readFileSync(f);
    bytes[bytes.length - 10] = (bytes[bytes.length - 10] ?? 0) ^ 0xff;
    writeFileSync(f, bytes);
    const err = await expectInvalid(['onnx/decoder_model_merged.onnx', 'sha256 mismatch']);
    expect(err.message).not.toContain('vision_encoder');
  });

  it('fails naming a missing file', async () => {
    unlinkSync(path.join(work, 'tokenizer.json'));
    await expectInvalid(['tokenizer.json', 'missing']);
  });

  it('fails naming a file whose manifest hash is wrong, and reports every problem at once', async () => {
    const mf = path.join(work, 'manifest.json');
    const m = JSON.parse(readFileSync(mf, 'utf8'));
    m.files['config.json'].sha256 = '0'.repeat(64);
    m.files['preprocessor_config.json'].size += 1;
    writeFileSync(mf, JSON.stringify(m));
    await expectInvalid(['config.json: sha256 mismatch', 'preprocessor_config.json: size']);
  });

  it('rejects a malformed manifest with field paths', async () => {
    const mf = path.join(work, 'manifest.json');
    const m = JSON.parse(readFileSync(mf, 'utf8'));
    m.modelFamily = 'llava';
    delete m.specialTokens;
    m.imagePosition = 'middle';
    writeFileSync(mf, JSON.stringify(m));
    await expectInvalid(['modelFamily', 'specialTokens', 'imagePosition']);
  });

  it('rejects a directory without manifest.json', async () => {
    unlinkSync(path.join(work, 'manifest.json'));
    await expectInvalid(['manifest.json']);
  });
});
