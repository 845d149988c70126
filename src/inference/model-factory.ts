import { EmbeddingMergeModel } from './merge-model.js';
import { MllamaModel } from './mllama-model.js';
import type { ModelBundle } from './model-bundle.js';
import { ModelFamily } from './model-manifest.js';
import type { ModelOptions, OrtSessions, VisionLanguageModel } from './vision-language-model.js';

/** Picks the family implementation from manifest.json `modelFamily` (model-contract §11.10). */
export async function createVisionLanguageModel(
  bundle: ModelBundle,
  opts: ModelOptions = {},
): Promise<VisionLanguageModel> {
  switch (bundle.manifest.modelFamily) {
    case ModelFamily.Mllama:
      return MllamaModel.create(bundle, opts);
    case ModelFamily.EmbeddingMerge:
      return EmbeddingMergeModel.create(bundle, opts);
  }
}

/** Wraps already created sessions (model check reuses the sessions it inspected). */
export function modelFromSessions(bundle: ModelBundle, s: OrtSessions): VisionLanguageModel {
  switch (bundle.manifest.modelFamily) {
    case ModelFamily.Mllama:
      return MllamaModel.fromSessions(bundle, s);
    case ModelFamily.EmbeddingMerge:
      return EmbeddingMergeModel.fromSessions(bundle, s);
  }
}
