/**
 * tokenizer.json / tokenizer_config.json for the tiny fixture. The normal vocabulary is printable ASCII
 * (space..~) plus "\n", so any generated text is valid DICOM UT text; the Llama-3 special tokens are added
 * special tokens with compact ids (model-contract §2.1 gives the real 128000+ ids, which a real bundle keeps).
 */

export const SPECIAL_TOKENS = [
  '<|begin_of_text|>',
  '<|end_of_text|>',
  '<|finetune_right_pad_id|>',
  '<|start_header_id|>',
  '<|end_header_id|>',
  '<|eom_id|>',
  '<|eot_id|>',
] as const;

export const IMAGE_TOKEN = '<|image|>';

/** Ordinary vocabulary: one token per printable ASCII character, then "\n". */
export function baseVocab(): string[] {
  const chars: string[] = [];
  for (let c = 0x20; c <= 0x7e; c++) chars.push(String.fromCharCode(c));
  chars.push('\n');
  return chars;
}

/**
 * Llama-3.2-Vision style chat template (image first inside the user turn, model-contract §2.2); BOS comes
 * from the template, as with the real tokenizer_config.json, so encoding uses add_special_tokens=false.
 */
export const CHAT_TEMPLATE = [
  '{{- bos_token }}',
  '{%- for message in messages %}',
  "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' }}",
  "{%- if message['content'] is string %}{{- message['content'] | trim }}",
  "{%- else %}{%- for content in message['content'] %}",
  "{%- if content['type'] == 'image' %}{{- '<|image|>' }}",
  "{%- elif content['type'] == 'text' %}{{- content['text'] | trim }}{%- endif %}",
  '{%- endfor %}{%- endif %}',
  "{{- '<|eot_id|>' }}",
  '{%- endfor %}',
  "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}",
].join('\n');

export interface TokenizerIds {
  vocabSize: number;
  special: Record<(typeof SPECIAL_TOKENS)[number], number>;
  image: number;
}

export function tokenizerIds(): TokenizerIds {
  const n = baseVocab().length;
  const special = Object.fromEntries(SPECIAL_TOKENS.map((t, i) => [t, n + i])) as TokenizerIds['special'];
  // Like the real model, <|image|> = vocab_size: it has an embedding row but no lm_head logit.
  return { vocabSize: n + SPECIAL_TOKENS.length, special, image: n + SPECIAL_TOKENS.length };
}

function addedToken(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

export function tokenizerJson(): Record<string, unknown> {
  const ids = tokenizerIds();
  const vocab = Object.fromEntries(baseVocab().map((c, i) => [c, i]));
  const added = [...SPECIAL_TOKENS.map((t) => addedToken(ids.special[t], t)), addedToken(ids.image, IMAGE_TOKEN)];
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: null,
    post_processor: null,
    // Fuse concatenates tokens verbatim, so decode(encode(s)) === s for ASCII text.
    decoder: { type: 'Fuse' },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}

export function tokenizerConfigJson(): Record<string, unknown> {
  const ids = tokenizerIds();
  return {
    _comment: 'RadScribe test fixture — output is meaningless.',
    tokenizer_class: 'PreTrainedTokenizerFast',
    bos_token: '<|begin_of_text|>',
    eos_token: '<|eot_id|>',
    pad_token: '<|finetune_right_pad_id|>',
    model_max_length: 1024,
    clean_up_tokenization_spaces: false,
    chat_template: CHAT_TEMPLATE,
    added_tokens_decoder: Object.fromEntries(
      [...SPECIAL_TOKENS.map((t) => [ids.special[t], t] as const), [ids.image, IMAGE_TOKEN] as const].map(([id, t]) => [
        String(id),
        { content: t, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
  };
}
