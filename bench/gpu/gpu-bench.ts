import { statSync } from 'node:fs';
import path from 'node:path';
import { generate } from '../../src/inference/generate.js';
import type { ImageInput } from '../../src/inference/image-input.js';
import { loadModelBundle } from '../../src/inference/model-bundle.js';
import { createVisionLanguageModel } from '../../src/inference/model-factory.js';
import { ChatTokenizer } from '../../src/inference/tokenizer.js';
import type { ExecutionProvider } from '../../src/inference/vision-language-model.js';

/**
 * GPU benchmark for one bundle (issue 4, run by bench/gpu/run.sh on a GPU host): provider actually in use,
 * time to first token (vision encoder + prefill), decode tokens/s, and the memory-bandwidth bound: each decode
 * step must read every decoder weight once (model-contract §7), so tokens/s ≤ bandwidth / decoder bytes.
 * Usage: node dist/bench/gpu/gpu-bench.js <bundle> [--ep cuda|cpu] [--tokens N] [--bandwidth-gbs 3350]
 */

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? (process.argv[i + 1] ?? dflt) : dflt;
}

function syntheticImage(family: string, geo: { size: number }): ImageInput {
  if (family === 'mllama') {
    const n = 4 * 3 * geo.size * geo.size;
    const px = new Float32Array(n);
    for (let i = 0; i < n; i++) px[i] = Math.sin(i * 0.001);
    return { pixelValues: px, dims: [1, 1, 4, 3, geo.size, geo.size], aspectRatioId: 6, aspectRatioMask: [1, 1, 1, 1] };
  }
  const n = 3 * geo.size * geo.size;
  const px = new Float32Array(n);
  for (let i = 0; i < n; i++) px[i] = Math.sin(i * 0.001);
  return { pixelValues: px, dims: [1, 3, geo.size, geo.size] };
}

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error('usage: gpu-bench <bundle> [--ep cuda|cpu] [--tokens N] [--bandwidth-gbs G]');
  const ep = arg('ep', 'cuda') as ExecutionProvider;
  const tokens = Number(arg('tokens', '64'));
  const bandwidth = Number(arg('bandwidth-gbs', '0'));
  const bundle = await loadModelBundle(dir);
  const t0 = performance.now();
  const model = await createVisionLanguageModel(bundle, { executionProviders: [ep] });
  const loadMs = performance.now() - t0;
  const tok = new ChatTokenizer({
    tokenizerJson: bundle.tokenizerJson,
    tokenizerConfig: bundle.tokenizerConfig,
    imageTokenId: bundle.manifest.specialTokens.image,
    chatTemplate: bundle.manifest.chatTemplate,
  });
  const ids = tok.encodePrompt(bundle.manifest.prompt, bundle.manifest.imagePosition);
  const img = () => syntheticImage(bundle.manifest.modelFamily, { size: bundle.manifest.preprocessing.imageSize });
  await generate(model, ids, img(), { maxNewTokens: 4, stopTokenIds: [] }); // warm-up (kernel selection)
  const runs = [];
  for (let i = 0; i < 3; i++) runs.push(await generate(model, ids, img(), { maxNewTokens: tokens, stopTokenIds: [] }));
  const best = runs.reduce((a, b) =>
    a.timings.decodeMs.reduce((x, y) => x + y, 0) <= b.timings.decodeMs.reduce((x, y) => x + y, 0) ? a : b,
  );
  const decodeMs = best.timings.decodeMs.reduce((x, y) => x + y, 0);
  const tps = best.timings.decodeMs.length / (decodeMs / 1000);
  // Decoder bytes = the decoder graph plus its external data (weights read once per step).
  const onnxDir = path.dirname(bundle.onnxPaths.decoder);
  const decoderBytes = Object.entries(bundle.manifest.files)
    .filter(([rel]) => path.basename(rel).startsWith(path.basename(bundle.onnxPaths.decoder)))
    .reduce((a, [rel]) => a + statSync(path.join(bundle.dir, rel)).size, 0);
  void onnxDir;
  const rows = [
    '| measure | value |',
    '|---|---|',
    `| bundle | ${bundle.manifest.name} ${bundle.manifest.version} (${bundle.manifest.modelFamily}) |`,
    `| provider in use | ${model.provider} (requested ${ep}) |`,
    `| session load | ${loadMs.toFixed(0)} ms |`,
    `| TTFT: vision encoder | ${best.timings.visionEncoderMs.toFixed(1)} ms |`,
    `| TTFT: prefill (${model.expandPrompt(ids).length} tokens) | ${best.timings.prefillMs.toFixed(1)} ms |`,
    `| TTFT (vision + prefill) | ${(best.timings.visionEncoderMs + best.timings.prefillMs).toFixed(1)} ms |`,
    `| decode | ${tps.toFixed(1)} tokens/s (${(decodeMs / best.timings.decodeMs.length).toFixed(2)} ms/token, best of 3) |`,
    `| decoder weights read per token | ${(decoderBytes / 1e9).toFixed(2)} GB |`,
    bandwidth > 0
      ? `| memory-bandwidth bound at ${bandwidth} GB/s | ${(bandwidth / (decoderBytes / 1e9)).toFixed(0)} tokens/s; measured = ${((100 * tps) / (bandwidth / (decoderBytes / 1e9))).toFixed(1)} % of it |`
      : '| memory-bandwidth bound | pass --bandwidth-gbs (run.sh measures it) |',
  ];
  process.stdout.write(`${rows.join('\n')}\n`);
  await model.dispose();
}

main().catch((err: unknown) => {
  process.stderr.write(`gpu-bench: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
