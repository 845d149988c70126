import { readFileSync } from 'node:fs';
import path from 'node:path';
import { loadModelBundle, type ModelBundle } from '../../../src/inference/model-bundle.js';
import { ImagePosition } from '../../../src/inference/model-manifest.js';
import { ChatTokenizer } from '../../../src/inference/tokenizer.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/**
 * Issue 10: the real Llama-3.2-Vision tokenizer of the tiny-mllama-real fixture (Llama-3 byte-level BPE + the
 * 3.2-Vision specials + Meta's chat template) gives, through the runtime's ChatTokenizer, exactly the prompt ids
 * that Hugging Face produced (PreTrainedTokenizerFast from the same tokenizer.json, apply_chat_template, then
 * encode without special tokens; tools/export/export_mllama.py tiny --write-fixtures). No Python in CI: the HF
 * side is the committed reference.json.
 */
const DIR = path.join(FIXTURES_DIR, 'models', 'tiny-mllama-real');

interface PromptCase {
  name?: string;
  prompt: string;
  imagePosition: ImagePosition;
  promptText: string;
  promptIds: number[];
}
const reference = JSON.parse(readFileSync(path.join(DIR, 'reference', 'reference.json'), 'utf8')) as {
  tokenizer: string;
  cases: PromptCase[];
  tokenizerCases: PromptCase[];
};
const allCases = [
  ...reference.tokenizerCases.map((c, i) => [`prompt ${i} (${c.imagePosition})`, c] as const),
  ...reference.cases.map((c) => [`model case ${c.name}`, c] as const),
];

describe(`Llama-3.2-Vision tokenizer vs HF (${reference.tokenizer.split(' from ')[0]})`, () => {
  let bundle: ModelBundle;
  let tok: ChatTokenizer;
  beforeAll(async () => {
    bundle = await loadModelBundle(DIR);
    // As the inference worker builds it: the manifest's chat template, checked equal to tokenizer_config.json's.
    tok = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
      chatTemplate: bundle.manifest.chatTemplate,
    });
  });

  it('is the real vocabulary: 128000 BPE ids, 280147 merges, 257 specials with the 3.1/3.2 names', () => {
    const model = bundle.tokenizerJson.model as { vocab: Record<string, number>; merges: unknown[] };
    expect(Object.keys(model.vocab)).toHaveLength(128000);
    expect(model.merges).toHaveLength(280147);
    expect(bundle.tokenizerJson.added_tokens as unknown[]).toHaveLength(257);
    const ids: Record<string, number> = {
      '<|begin_of_text|>': 128000,
      '<|end_of_text|>': 128001,
      '<|reserved_special_token_0|>': 128002,
      '<|finetune_right_pad_id|>': 128004,
      '<|start_header_id|>': 128006,
      '<|end_header_id|>': 128007,
      '<|eom_id|>': 128008,
      '<|eot_id|>': 128009,
      '<|python_tag|>': 128010,
      '<|reserved_special_token_247|>': 128255,
      '<|image|>': 128256,
    };
    for (const [t, id] of Object.entries(ids)) expect(tok.tokenToId(t)).toBe(id);
    const st = bundle.manifest.specialTokens;
    expect([st.bos, st.pad, st.image, st.eos]).toEqual([128000, 128004, 128256, [128001, 128008, 128009]]);
    // Known Llama-3 merges: "user", "assistant" and "\n\n" are single ids (HF gives 882, 78191, 271).
    expect(tok.encode('user')).toEqual([882]);
    expect(tok.encode('assistant')).toEqual([78191]);
    expect(tok.encode('\n\n')).toEqual([271]);
  });

  it('covers non-ASCII text and both image positions', () => {
    const texts = allCases.map(([, c]) => c.prompt).join('');
    for (const s of ['é', '日本語', '🩻', '\t', '\n']) expect(texts).toContain(s);
    expect(new Set(allCases.map(([, c]) => c.imagePosition))).toEqual(
      new Set([ImagePosition.BeforeText, ImagePosition.AfterText]),
    );
  });

  it.each(allCases)('%s: same rendered prompt and the same ids as HF', (_name, c) => {
    expect(tok.renderPrompt(c.prompt, c.imagePosition)).toBe(c.promptText);
    const ids = tok.encodePrompt(c.prompt, c.imagePosition);
    expect(ids).toEqual(c.promptIds);
    // The image token sits right after the user header (before-text) or right before <|eot_id|> (after-text).
    const image = ids.indexOf(128256);
    if (c.imagePosition === ImagePosition.BeforeText)
      expect(ids.slice(0, image)).toEqual([128000, 128006, 882, 128007, 271]);
    else expect(ids[image + 1]).toBe(128009);
    expect(ids.slice(-4)).toEqual([128006, 78191, 128007, 271]);
  });

  it('keeps an exact prompt whose decode clean-up would differ (" ?" with clean_up_tokenization_spaces true)', () => {
    expect(bundle.tokenizerConfig.clean_up_tokenization_spaces).toBe(true);
    const text = 'Fracture du fémur ? Oui , probable .';
    expect(tok.decode(tok.encode(text), false)).toBe('Fracture du fémur? Oui, probable.');
  });
});
