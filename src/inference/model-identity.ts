import { createHash } from 'node:crypto';
import { isValidUid } from '../dicom/dataset.js';
import { deriveUid } from '../dicom/sr/draft-policy.js';
import { ErrorCode, ModelError } from '../errors.js';
import type { ModelManifest } from './model-manifest.js';

/**
 * Who wrote a draft: the model bundle as the SR's Contributing Equipment / TID 4019 Algorithm
 * Identification sees it (PS3.3 C.17.5, PS3.16 TID 4019). The inference side reports it once at
 * start-up (InferenceClient.identity); the SR code receives it as data.
 */
export interface ModelIdentity {
  readonly name: string;
  readonly version: string;
  /** Device UID (0018,1002): changes whenever the model changes (IHE AIR). */
  readonly deviceUid: string;
  readonly fixture: boolean;
  readonly label?: string;
  /** Prompt the model is driven with (TID 4019 Algorithm Parameters). */
  readonly prompt: string;
  /** Execution provider the sessions actually loaded on (cuda, cpu). */
  readonly provider: string;
}

/**
 * Device UID (0018,1002) of a model bundle: the manifest's own `deviceUid` if it declares one, else a
 * UID derived from the SHA-256 of manifest.json, which changes whenever the weights (listed with their
 * hashes in the manifest) change, as IHE AIR requires.
 */
export function modelDeviceUid(manifestJsonBytes: Uint8Array, declaredDeviceUid?: string): string {
  if (declaredDeviceUid !== undefined) {
    if (!isValidUid(declaredDeviceUid))
      throw new ModelError(ErrorCode.ModelInvalid, 'modelDeviceUid: manifest deviceUid is not a valid UID');
    return declaredDeviceUid;
  }
  return deriveUid('radscribe-model', createHash('sha256').update(manifestJsonBytes).digest('hex'));
}

/** The identity of a loaded bundle, from its manifest, the manifest's bytes and the provider in use. */
export function modelIdentity(manifest: ModelManifest, manifestJsonBytes: Uint8Array, provider: string): ModelIdentity {
  return {
    name: manifest.name,
    version: manifest.version,
    deviceUid: modelDeviceUid(manifestJsonBytes, manifest.deviceUid),
    fixture: manifest.fixture,
    ...(manifest.label ? { label: manifest.label } : {}),
    prompt: manifest.prompt,
    provider,
  };
}
