import * as ort from 'onnxruntime-node';
import { floatData } from '../../../src/inference/float16.js';
import type { ImageInput } from '../../../src/inference/image-input.js';
import { KvCache } from '../../../src/inference/kv-cache.js';
import type { MllamaModel } from '../../../src/inference/mllama-model.js';
import { int64 } from '../../../src/inference/vision-language-model.js';

// Loads onnxruntime-node: import only from tests that run in ./ort-test-environment.js.
/**
 * One prefill pass of an Mllama bundle (empty KV cache, positions 0..S-1) returning the logits of EVERY prompt
 * row as float32, unlike generate(), which reads the last row only. For masking tests: rows before <|image|>.
 */
export async function prefillLogits(
  model: MllamaModel,
  ids: readonly number[],
  img: ImageInput,
): Promise<Float32Array[]> {
  const enc = await model.encodeImages([img]);
  const cache = new KvCache(model.kv, 1);
  try {
    const inputs = await model.decoderInputs(enc, [ids], ids.length);
    const feeds: Record<string, ort.Tensor> = {
      ...inputs,
      attention_mask: int64(new Array<number>(ids.length).fill(1), [1, ids.length]),
      position_ids: int64(
        Array.from({ length: ids.length }, (_, i) => i),
        [1, ids.length],
      ),
      ...cache.feeds(),
    };
    if (model.optionalDecoderInputs.has('num_logits_to_keep'))
      feeds.num_logits_to_keep = new ort.Tensor('int64', BigInt64Array.of(BigInt(ids.length)), []);
    if (model.optionalDecoderInputs.has('use_cache_branch'))
      feeds.use_cache_branch = new ort.Tensor('bool', Uint8Array.of(0), [1]);
    const out = await model.decode(feeds);
    inputs.inputs_embeds?.dispose();
    cache.update(out);
    const logits = out.logits;
    if (!logits) throw new Error('decoder returned no logits');
    const values = floatData(logits);
    const V = logits.dims[2] ?? 0;
    const rows = Array.from({ length: ids.length }, (_, s) => values.slice(s * V, (s + 1) * V));
    logits.dispose();
    return rows;
  } finally {
    cache.dispose();
    enc.dispose();
  }
}
