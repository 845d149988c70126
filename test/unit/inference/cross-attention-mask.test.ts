import { buildCrossAttentionMask, imageTokenSpans, lastRow } from '../../../src/inference/cross-attention-mask.js';
import { loadModelBundle } from '../../../src/inference/model-bundle.js';
import { ChatTokenizer } from '../../../src/inference/tokenizer.js';
import { TINY_MLLAMA_DIR } from './helpers.js';

describe('cross_attention_mask (model-contract §2.3)', () => {
  it('for the image-first prompt: rows before <|image|> are 0, the image row and after see the real tiles only', async () => {
    const b = await loadModelBundle(TINY_MLLAMA_DIR);
    const tok = new ChatTokenizer({
      tokenizerJson: b.tokenizerJson,
      tokenizerConfig: b.tokenizerConfig,
      imageTokenId: b.manifest.specialTokens.image,
    });
    const ids = tok.encodePrompt(b.manifest.prompt, 'before-text');
    const loc = ids.indexOf(b.manifest.specialTokens.image);
    expect(loc).toBeGreaterThan(0);
    for (const n of [1, 2, 3, 4]) {
      const m = buildCrossAttentionMask(ids, b.manifest.specialTokens.image, [n], 4);
      expect(m.dims).toEqual([1, ids.length, 1, 4]);
      for (let t = 0; t < ids.length; t++) {
        for (let k = 0; k < 4; k++) {
          expect(m.data[t * 4 + k]).toBe(t >= loc && k < n ? 1n : 0n);
        }
      }
      const last = lastRow(m);
      expect(last.dims).toEqual([1, 1, 1, 4]);
      expect(Array.from(last.data)).toEqual([0, 1, 2, 3].map((k) => (k < n ? 1n : 0n)));
    }
  });

  it('multi-image spans follow HF get_cross_attention_token_mask (consecutive images share the range)', () => {
    const I = 9;
    expect(imageTokenSpans([1, I, 2, 3, I, 4], I)).toEqual([
      [1, 4],
      [4, 6],
    ]);
    expect(imageTokenSpans([I, I, 2, 3], I)).toEqual([
      [0, 4],
      [1, 4],
    ]);
    expect(imageTokenSpans([1, 2], I)).toEqual([]);
  });

  it('rejects a prompt whose image count differs from the images given', () => {
    expect(() => buildCrossAttentionMask([1, 2, 3], 9, [1], 4)).toThrow(RangeError);
  });
});
