import * as ort from 'onnxruntime-node';
import type { KvSpec } from './vision-language-model.js';

/**
 * Owner of the self-attention past KV tensors (STYLE rule 11; transformers.js `cache_utils.js` DynamicCache):
 * `update()` takes the decoder's present.* outputs as the next past and disposes the replaced tensors.
 * Cross-attention K/V are not cached here: v1 recomputes them from cross_attention_states (model-contract §11.7).
 */
export class KvCache {
  private past = new Map<string, ort.Tensor>();
  private disposed = false;

  private readonly pastNames: readonly string[];

  /**
   * @param spec cache inputs (`past_key_values.{i}.key|value`) and their dtype, discovered from the session;
   *   the cache is kept in the dtype the graph declares (fp16 graphs get fp16 KV, no conversion per step).
   */
  constructor(
    private readonly spec: KvSpec,
    private readonly batch = 1,
  ) {
    this.pastNames = spec.names;
    this.reset();
  }

  /** Empty cache [B, kvH, 0, D] (model-contract §4). */
  reset(): void {
    this.disposeTensors();
    this.disposed = false;
    const dims = [this.batch, this.spec.kvHeads, 0, this.spec.headDim];
    for (const name of this.pastNames) {
      this.past.set(
        name,
        this.spec.dtype === 'float16'
          ? new ort.Tensor('float16', new Uint16Array(0), dims)
          : new ort.Tensor('float32', new Float32Array(0), dims),
      );
    }
  }

  /** Number of positions already in the cache. */
  get pastLength(): number {
    const first = this.pastNames[0];
    const t = first === undefined ? undefined : this.past.get(first);
    return t?.dims[2] ?? 0;
  }

  feeds(): Record<string, ort.Tensor> {
    if (this.disposed) throw new Error('KvCache used after dispose');
    return Object.fromEntries(this.past);
  }

  /** present.{i}.* → past_key_values.{i}.*; the old past tensors are disposed. */
  update(outputs: Record<string, ort.Tensor>): void {
    const next = new Map<string, ort.Tensor>();
    for (const name of this.pastNames) {
      const present = outputs[name.replace(/^past_key_values\./, 'present.')];
      if (!present) throw new Error(`decoder output for ${name} missing`);
      next.set(name, present);
    }
    this.disposeTensors();
    this.past = next;
  }

  private disposeTensors(): void {
    for (const t of this.past.values()) t.dispose();
    this.past.clear();
  }

  /** Idempotent. */
  dispose(): void {
    this.disposeTensors();
    this.disposed = true;
  }
}
