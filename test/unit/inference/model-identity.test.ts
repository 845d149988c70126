import { createHash } from 'node:crypto';
import { deriveUid } from '../../../src/dicom/sr/draft-policy.js';
import { ErrorCode } from '../../../src/errors.js';
import { modelDeviceUid, modelIdentity } from '../../../src/inference/model-identity.js';
import type { ModelManifest } from '../../../src/inference/model-manifest.js';

describe('modelDeviceUid', () => {
  const bytes = new TextEncoder().encode('{"name":"m","version":"1"}');
  it('derives the UID from the manifest hash, so a changed manifest gives a new Device UID', () => {
    const hash = createHash('sha256').update(bytes).digest('hex');
    expect(modelDeviceUid(bytes)).toBe(deriveUid('radscribe-model', hash));
    expect(modelDeviceUid(new TextEncoder().encode('{"name":"m","version":"2"}'))).not.toBe(modelDeviceUid(bytes));
  });
  it('prefers a declared UID and rejects an invalid one as a model problem', () => {
    expect(modelDeviceUid(bytes, '2.25.5')).toBe('2.25.5');
    expect(() => modelDeviceUid(bytes, 'nope')).toThrow(expect.objectContaining({ code: ErrorCode.ModelInvalid }));
  });
});

describe('modelIdentity', () => {
  it('reports name, version, Device UID, fixture, label, prompt and the provider in use', () => {
    const bytes = new TextEncoder().encode('{"x":1}');
    const m = { name: 'n', version: '3', fixture: true, label: 'TEST FIXTURE', prompt: 'Describe.' } as ModelManifest;
    expect(modelIdentity(m, bytes, 'cpu')).toEqual({
      name: 'n',
      version: '3',
      deviceUid: modelDeviceUid(bytes),
      fixture: true,
      label: 'TEST FIXTURE',
      prompt: 'Describe.',
      provider: 'cpu',
    });
    expect(modelIdentity({ ...m, label: '' }, bytes, 'cuda')).not.toHaveProperty('label');
  });
});
