import { createHash } from 'node:crypto';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger } from '../logger.js';
import { generateBatch } from './generate.js';
import { loadModelBundle, type ModelBundle } from './model-bundle.js';
import { createVisionLanguageModel } from './model-factory.js';
import { ChatTokenizer } from './tokenizer.js';
import type { VisionLanguageModel } from './vision-language-model.js';
import type {
  DescribeRequest,
  DescribeResult,
  SerializedError,
  WorkerRequest,
  WorkerResponse,
} from './worker-protocol.js';

/**
 * Child-process entry that owns the model: onnxruntime-node `run()` blocks the event loop (js-stack.md
 * §1), so it runs outside the gateway. A child process rather than the worker_thread STYLE §2.1 names:
 * it can be killed safely in the middle of a native ORT run, whereas a worker_thread terminated there
 * can abort the whole host process (README "Inference runs in a child process"). Requests are served
 * one at a time; abort messages are handled between decode steps because every ORT run yields through
 * setImmediate.
 */

const log = childLogger('inference-worker');

interface Loaded {
  bundle: ModelBundle;
  model: VisionLanguageModel;
  tokenizer: ChatTokenizer;
}

let loaded: Loaded | undefined;
let queue: Promise<void> = Promise.resolve();
const aborts = new Map<number, AbortController>();

function serialize(err: unknown): SerializedError {
  return {
    name: err instanceof Error ? err.name : 'Error',
    code: errorCodeOf(err),
    message: normalizeErrorString(err),
  };
}

/** InferenceClient forks us with an IPC channel and advanced serialization, so typed arrays arrive intact. */
if (!process.send) throw new Error('inference-worker must run as a child process with an IPC channel (fork)');
const port = {
  postMessage: (m: WorkerResponse) => process.send?.(m),
  on: (_: 'message', fn: (m: WorkerRequest) => void) => process.on('message', fn),
};
// Never outlive the gateway: when the IPC channel closes, exit.
process.on('disconnect', () => process.exit(0));

function send(msg: WorkerResponse): void {
  port.postMessage(msg);
}

async function load(req: Extract<WorkerRequest, { type: 'load' }>): Promise<void> {
  try {
    const bundle = await loadModelBundle(req.bundleDir);
    const model = await createVisionLanguageModel(bundle, {
      ...(req.executionProviders ? { executionProviders: req.executionProviders } : {}),
      ...(req.intraOpNumThreads !== undefined ? { intraOpNumThreads: req.intraOpNumThreads } : {}),
    });
    const tokenizer = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
      chatTemplate: bundle.manifest.chatTemplate,
    });
    loaded = { bundle, model, tokenizer };
    log.info('model loaded', {
      name: bundle.manifest.name,
      version: bundle.manifest.version,
      provider: model.provider,
      family: model.family,
    });
    send({
      type: 'loaded',
      manifest: bundle.manifest,
      provider: model.provider,
      bundleDir: bundle.dir,
      preprocessorConfigPath: bundle.preprocessorConfigPath,
      preprocessorConfig: bundle.preprocessorConfig,
      dynamicBatch: model.dynamicBatch,
    });
  } catch (err: unknown) {
    send({ type: 'load-failed', error: serialize(err) });
  }
}

async function describe(req: DescribeRequest, signal: AbortSignal): Promise<void> {
  if (!loaded) throw new Error('describe before load');
  const { bundle, model, tokenizer } = loaded;
  const m = bundle.manifest;
  const g = m.generation;
  const o = req.opts.sampling ?? {};
  const pick = <T>(a: T | undefined, b: T | undefined) => a ?? b;
  const sampling = Object.fromEntries(
    Object.entries({
      doSample: pick(o.doSample, g.doSample) ?? false,
      temperature: pick(o.temperature, g.temperature),
      topK: pick(o.topK, g.topK),
      topP: pick(o.topP, g.topP),
      repetitionPenalty: pick(o.repetitionPenalty, g.repetitionPenalty),
      noRepeatNgramSize: pick(o.noRepeatNgramSize, g.noRepeatNgramSize),
      seed: o.seed,
    }).filter(([, v]) => v !== undefined),
  ) as { doSample: boolean };
  const promptIds = tokenizer.encodePrompt(req.opts.prompt ?? m.prompt, m.imagePosition);
  const results = await generateBatch(model, promptIds, req.images, {
    maxNewTokens: req.opts.maxNewTokens ?? g.maxNewTokens,
    stopTokenIds: m.specialTokens.eos,
    sampling,
    ...(req.opts.timeoutMs !== undefined ? { deadlineMs: Date.now() + req.opts.timeoutMs } : {}),
    signal,
  });
  const promptTokens = model.expandPrompt(promptIds).length;
  const out: DescribeResult[] = results.map((result) => {
    const text = tokenizer.decode(result.tokenIds, true);
    // No PHI / model text in logs: token counts and a hash only (STYLE §2.6).
    log.info('describe finished', {
      promptTokens,
      newTokens: result.tokenIds.length,
      stopReason: result.stopReason,
      batch: req.images.length,
      textSha256: createHash('sha256').update(text).digest('hex'),
      visionEncoderMs: Math.round(result.timings.visionEncoderMs),
      prefillMs: Math.round(result.timings.prefillMs),
    });
    return {
      text,
      promptTokens,
      tokenIds: result.tokenIds,
      stopReason: result.stopReason,
      timings: result.timings,
      provider: model.provider,
      model: {
        name: m.name,
        version: m.version,
        path: bundle.dir,
        fixture: m.fixture,
        ...(m.label !== undefined ? { label: m.label } : {}),
        ...(m.deviceUid !== undefined ? { deviceUid: m.deviceUid } : {}),
      },
    };
  });
  send({ type: 'result', id: req.id, results: out });
}

port.on('message', (msg: WorkerRequest) => {
  switch (msg.type) {
    case 'load':
      queue = queue.then(() => load(msg));
      break;
    case 'describe': {
      const ac = new AbortController();
      aborts.set(msg.id, ac);
      queue = queue
        .then(() => describe(msg, ac.signal))
        .catch((err: unknown) => send({ type: 'error', id: msg.id, error: serialize(err) }))
        .finally(() => aborts.delete(msg.id));
      break;
    }
    case 'abort':
      aborts.get(msg.id)?.abort();
      break;
    case 'dispose':
      for (const ac of aborts.values()) ac.abort();
      queue = queue
        .then(async () => {
          await loaded?.model.dispose();
          loaded = undefined;
        })
        .catch((err: unknown) => log.warn('dispose failed', { error: normalizeErrorString(err) }))
        .then(() => send({ type: 'disposed' }));
      break;
  }
});
