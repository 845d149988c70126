import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import { childLogger } from '../logger.js';
import { generate } from './generate.js';
import { MllamaModel } from './mllama-model.js';
import { loadModelBundle, type ModelBundle } from './model-bundle.js';
import { ChatTokenizer } from './tokenizer.js';
import type { DescribeRequest, SerializedError, WorkerRequest, WorkerResponse } from './worker-protocol.js';

/**
 * worker_thread entry that owns the model (STYLE §2.1: onnxruntime-node `run()` blocks the event loop,
 * js-stack.md §1). Requests are served one at a time; abort messages are handled between decode steps
 * because every ORT run yields through setImmediate.
 */

const log = childLogger('inference-worker');

interface Loaded {
  bundle: ModelBundle;
  model: MllamaModel;
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

function send(msg: WorkerResponse): void {
  parentPort?.postMessage(msg);
}

async function load(req: Extract<WorkerRequest, { type: 'load' }>): Promise<void> {
  try {
    const bundle = await loadModelBundle(req.bundleDir);
    const model = await MllamaModel.create(bundle, {
      ...(req.executionProviders ? { executionProviders: req.executionProviders } : {}),
      ...(req.intraOpNumThreads !== undefined ? { intraOpNumThreads: req.intraOpNumThreads } : {}),
    });
    const tokenizer = new ChatTokenizer({
      tokenizerJson: bundle.tokenizerJson,
      tokenizerConfig: bundle.tokenizerConfig,
      imageTokenId: bundle.manifest.specialTokens.image,
    });
    loaded = { bundle, model, tokenizer };
    log.info('model loaded', {
      name: bundle.manifest.name,
      version: bundle.manifest.version,
      provider: model.provider,
    });
    send({
      type: 'loaded',
      manifest: bundle.manifest,
      provider: model.provider,
      bundleDir: bundle.dir,
      preprocessorConfigPath: bundle.preprocessorConfigPath,
    });
  } catch (err: unknown) {
    send({ type: 'load-failed', error: serialize(err) });
  }
}

async function describe(req: DescribeRequest, signal: AbortSignal): Promise<void> {
  if (!loaded) throw new Error('describe before load');
  const { bundle, model, tokenizer } = loaded;
  const m = bundle.manifest;
  const promptIds = tokenizer.encodePrompt(req.opts.prompt ?? m.prompt, m.imagePosition);
  const result = await generate(model, promptIds, req.image, {
    maxNewTokens: req.opts.maxNewTokens ?? m.generation.maxNewTokens,
    stopTokenIds: m.specialTokens.eos,
    sampling: {
      doSample: m.generation.doSample,
      ...(m.generation.temperature !== undefined ? { temperature: m.generation.temperature } : {}),
      ...(m.generation.topK !== undefined ? { topK: m.generation.topK } : {}),
      ...(m.generation.topP !== undefined ? { topP: m.generation.topP } : {}),
      ...(m.generation.repetitionPenalty !== undefined ? { repetitionPenalty: m.generation.repetitionPenalty } : {}),
    },
    ...(req.opts.timeoutMs !== undefined ? { deadlineMs: Date.now() + req.opts.timeoutMs } : {}),
    signal,
  });
  const text = tokenizer.decode(result.tokenIds, true);
  // No PHI / model text in logs: token counts and a hash only (STYLE §2.6).
  log.info('describe finished', {
    promptTokens: promptIds.length,
    newTokens: result.tokenIds.length,
    stopReason: result.stopReason,
    textSha256: createHash('sha256').update(text).digest('hex'),
    visionEncoderMs: Math.round(result.timings.visionEncoderMs),
    prefillMs: Math.round(result.timings.prefillMs),
  });
  send({
    type: 'result',
    id: req.id,
    result: {
      text,
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
    },
  });
}

parentPort?.on('message', (msg: WorkerRequest) => {
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
