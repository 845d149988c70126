import * as ort from 'onnxruntime-node';

/**
 * Owner of the self-attention past KV tensors (STYLE rule 11; transformers.js `cache_utils.js` DynamicCache):
 * `update()` takes the decoder's present.* outputs as the next past and disposes the replaced tensors.
 * Cross-attention K/V are not cached here: v1 recomputes them from cross_attention_states (model-contract §11.7).
 */
export class KvCache {
  private past = new Map<string, ort.Tensor>();
  private disposed = false;

  /**
   * @param pastNames decoder inputs matching `past_key_values.{i}.key|value`, discovered from the session.
   */
  constructor(
    private readonly pastNames: readonly string[],
    private readonly kvHeads: number,
    private readonly headDim: number,
  ) {
    this.reset();
  }

  /** Empty cache [1, kvH, 0, D] (model-contract §4). */
  reset(): void {
    this.disposeTensors();
    this.disposed = false;
    for (const name of this.pastNames) {
      this.past.set(name, new ort.Tensor('float32', new Float32Array(0), [1, this.kvHeads, 0, this.headDim]));
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
