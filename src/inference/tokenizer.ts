import { Template } from '@huggingface/jinja';
import { Tokenizer } from '@huggingface/tokenizers';
import { ErrorCode, ModelError, RadScribeError } from '../errors.js';
import { ImagePosition } from './model-manifest.js';

/**
 * Tokenizer + chat template (model-contract §2.2, §11.4): @huggingface/tokenizers for ids, @huggingface/jinja
 * for the bundle's chat_template. The prompt is one user turn with the image placed where the bundle
 * says it was trained (model-contract §2.2 "prompt-order pitfall").
 */

export interface ChatTokenizerOptions {
  tokenizerJson: Record<string, unknown>;
  tokenizerConfig: Record<string, unknown>;
  imageTokenId: number;
  /** manifest.json chatTemplate; defaults to tokenizer_config.json chat_template (the loader checks they agree). */
  chatTemplate?: string;
}

export class ChatTokenizer {
  private readonly tokenizer: Tokenizer;
  private readonly template: Template;
  private readonly config: Record<string, unknown>;
  readonly imageTokenId: number;

  constructor(opts: ChatTokenizerOptions) {
    const chatTemplate = opts.chatTemplate ?? opts.tokenizerConfig.chat_template;
    if (typeof chatTemplate !== 'string')
      throw new ModelError(ErrorCode.ModelInvalid, 'tokenizer_config.json: chat_template missing');
    try {
      this.tokenizer = new Tokenizer(opts.tokenizerJson, opts.tokenizerConfig);
      this.template = new Template(chatTemplate);
    } catch (err: unknown) {
      throw new ModelError(ErrorCode.ModelInvalid, 'tokenizer.json or chat_template could not be loaded', {
        cause: err,
      });
    }
    this.config = opts.tokenizerConfig;
    this.imageTokenId = opts.imageTokenId;
  }

  private specialToken(key: string): string {
    const v = this.config[key];
    const s = typeof v === 'string' ? v : (v as { content?: unknown } | undefined)?.content;
    return typeof s === 'string' ? s : '';
  }

  /** Renders the chat template for one user turn holding the image and the prompt, plus the assistant header. */
  renderPrompt(prompt: string, imagePosition: ImagePosition): string {
    const image = { type: 'image' };
    const text = { type: 'text', text: prompt };
    const content = imagePosition === ImagePosition.BeforeText ? [image, text] : [text, image];
    return this.template.render({
      messages: [{ role: 'user', content }],
      bos_token: this.specialToken('bos_token'),
      eos_token: this.specialToken('eos_token'),
      add_generation_prompt: true,
    });
  }

  /**
   * Prompt → ids. The template already emits BOS, so no special tokens are added here
   * (processing_mllama `build_string_from_input` prepends BOS only if absent).
   */
  encodePrompt(prompt: string, imagePosition: ImagePosition): number[] {
    const ids = this.encode(this.renderPrompt(prompt, imagePosition));
    const images = ids.filter((id) => id === this.imageTokenId).length;
    if (images !== 1) {
      throw new RadScribeError(ErrorCode.InferenceFailed, `rendered prompt has ${images} image tokens, expected 1`);
    }
    return ids;
  }

  /**
   * Encodes text. A tokenizer that silently drops unknown characters would change the prompt, so the
   * ids must decode back to the exact text (Llama-3's byte-level BPE round-trips exactly, js-stack.md §2).
   */
  encode(text: string): number[] {
    let ids: number[];
    try {
      ids = this.tokenizer.encode(text, { add_special_tokens: false }).ids;
    } catch (err: unknown) {
      throw new RadScribeError(ErrorCode.RequestInvalid, 'prompt could not be tokenized', { cause: err });
    }
    // The check decodes WITHOUT clean_up_tokenization_spaces: Meta's Llama-3.2 tokenizer_config.json sets it true,
    // and that cosmetic step (" ?" -> "?", " 's" -> "'s") would make exactly-encoded prompts look lossy.
    const back =
      ids.length === 0
        ? ''
        : this.tokenizer.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false });
    if (back !== text) {
      throw new RadScribeError(ErrorCode.RequestInvalid, 'prompt contains characters outside the tokenizer vocabulary');
    }
    return ids;
  }

  decode(ids: readonly number[], skipSpecialTokens = true): string {
    // @huggingface/tokenizers throws on an empty list; zero generated tokens is a valid empty text.
    if (ids.length === 0) return '';
    return this.tokenizer.decode([...ids], { skip_special_tokens: skipSpecialTokens });
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }
}
