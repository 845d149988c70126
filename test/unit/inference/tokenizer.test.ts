import { ErrorCode, RadScribeError } from '../../../src/errors.js';
import { loadModelBundle, type ModelBundle } from '../../../src/inference/model-bundle.js';
import { ChatTokenizer } from '../../../src/inference/tokenizer.js';
import { TINY_MLLAMA_DIR } from './helpers.js';

describe('ChatTokenizer (fixture tokenizer.json + chat template)', () => {
  let bundle: ModelBundle;
  let tok: ChatTokenizer;
  beforeAll(async () => {
    bundle = await loadModelBundle(TINY_MLLAMA_DIR);
    tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
    });
  });

  it('round-trips any printable ASCII text and newlines', () => {
    let all = '';
    for (let c = 0x20; c <= 0x7e; c++) all += String.fromCharCode(c);
    const text = `${all}\nNo acute fracture.\n  Lungs: clear; heart size ~ normal (CTR < 0.5).`;
    const ids = tok.encode(text);
    expect(ids).toHaveLength(text.length);
    expect(tok.decode(ids)).toBe(text);
  });

  it('maps the Llama-3 special tokens to the manifest ids', () => {
    const st = bundle.manifest.specialTokens;
    expect(tok.tokenToId('<|begin_of_text|>')).toBe(st.bos);
    expect(tok.tokenToId('<|image|>')).toBe(st.image);
    expect(tok.tokenToId('<|finetune_right_pad_id|>')).toBe(st.pad);
    expect(st.eos).toEqual(['<|end_of_text|>', '<|eom_id|>', '<|eot_id|>'].map((t) => tok.tokenToId(t)));
  });

  it('renders the image-first Llama-3.2-Vision prompt (model-contract §2.2)', () => {
    const prompt = bundle.manifest.prompt;
    expect(tok.renderPrompt(prompt, 'before-text')).toBe(
      `<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n<|image|>${prompt}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n`,
    );
    const ids = tok.encodePrompt(prompt, bundle.manifest.imagePosition);
    const header = tok.encode('<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n');
    expect(ids.slice(0, header.length)).toEqual(header);
    expect(ids[header.length]).toBe(bundle.manifest.specialTokens.image);
    expect(tok.decode(ids.slice(header.length + 1, header.length + 1 + prompt.length))).toBe(prompt);
    expect(ids.filter((i) => i === bundle.manifest.specialTokens.image)).toHaveLength(1);
    expect(tok.decode(ids)).toBe(`user\n\n${prompt}assistant\n\n`);
  });

  it('puts the image after the text when the bundle says so', () => {
    const ids = tok.encodePrompt('Describe.', 'after-text');
    const eot = tok.tokenToId('<|eot_id|>');
    const imageAt = ids.indexOf(bundle.manifest.specialTokens.image);
    expect(ids[imageAt + 1]).toBe(eot);
    expect(tok.decode(ids.slice(imageAt - 'Describe.'.length, imageAt))).toBe('Describe.');
  });

  it('rejects prompt characters outside the vocabulary with a typed error', () => {
    expect(() => tok.encodePrompt('Beschreibe das Röntgenbild', 'before-text')).toThrow(RadScribeError);
    try {
      tok.encode('é');
      throw new Error('expected a RadScribeError');
    } catch (err) {
      expect((err as RadScribeError).code).toBe(ErrorCode.RequestInvalid);
    }
  });
});
