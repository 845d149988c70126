import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { generateFixtureBundle } from '../../../tools/make-fixture-model.js';
import { TINY_MERGE_DIR, TINY_MLLAMA_DIR } from './helpers.js';

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const rel = prefix ? `${prefix}/${name}` : name;
    return statSync(path.join(dir, name)).isDirectory() ? listFiles(path.join(dir, name), rel) : [rel];
  });
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

describe('tools/make-fixture-model', () => {
  let out: string;
  beforeAll(() => {
    out = mkdtempSync(path.join(tmpdir(), 'tiny-mllama-'));
  });
  afterAll(() => rmSync(out, { recursive: true, force: true }));

  it('regenerates the committed bundle byte for byte (seed 42)', () => {
    generateFixtureBundle(out, 42);
    const committed = listFiles(TINY_MLLAMA_DIR).sort();
    expect(listFiles(out).sort()).toEqual(committed);
    for (const rel of committed)
      expect([rel, sha(path.join(out, rel))]).toEqual([rel, sha(path.join(TINY_MLLAMA_DIR, rel))]);
  });

  it('regenerates the committed embedding-merge bundle byte for byte (seed 42)', () => {
    const merge = mkdtempSync(path.join(tmpdir(), 'tiny-merge-'));
    try {
      generateFixtureBundle(merge, { family: 'embedding-merge', seed: 42 });
      const committed = listFiles(TINY_MERGE_DIR).sort();
      expect(listFiles(merge).sort()).toEqual(committed);
      for (const rel of committed)
        expect([rel, sha(path.join(merge, rel))]).toEqual([rel, sha(path.join(TINY_MERGE_DIR, rel))]);
      const manifest = JSON.parse(readFileSync(path.join(TINY_MERGE_DIR, 'manifest.json'), 'utf8'));
      expect(manifest.modelFamily).toBe('embedding-merge');
      expect(manifest.label).toBe('test fixture — output is meaningless');
      expect(manifest.preprocessing.kind).toBe('resize-normalize');
    } finally {
      rmSync(merge, { recursive: true, force: true });
    }
  });

  it('is small and labelled as a meaningless test fixture', () => {
    const total = listFiles(TINY_MLLAMA_DIR).reduce((a, rel) => a + statSync(path.join(TINY_MLLAMA_DIR, rel)).size, 0);
    expect(total).toBeLessThan(2 * 1024 * 1024);
    const manifest = JSON.parse(readFileSync(path.join(TINY_MLLAMA_DIR, 'manifest.json'), 'utf8'));
    expect(manifest.fixture).toBe(true);
    expect(manifest.label).toBe('test fixture — output is meaningless');
    expect(manifest.provenance.baseModel).toBeNull();
    const config = JSON.parse(readFileSync(path.join(TINY_MLLAMA_DIR, 'config.json'), 'utf8'));
    expect(config._comment).toContain('output is meaningless');
  });

  it('a different seed gives different weights', () => {
    const other = mkdtempSync(path.join(tmpdir(), 'tiny-mllama-s7-'));
    try {
      generateFixtureBundle(other, 7);
      const f = 'onnx/decoder_model_merged.onnx';
      expect(sha(path.join(other, f))).not.toBe(sha(path.join(TINY_MLLAMA_DIR, f)));
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
