import { loadConfig } from '../../../src/config.js';

import { ConfigError } from '../../../src/errors.js';

/** remoteNodes[].poll keys of the incremental window (src/config/qido-poll.ts): validated, every problem reported. */
const node = (poll: Record<string, unknown>) =>
  ({
    remoteNodes: [{ name: 'pacs', baseUrl: 'http://127.0.0.1:8042/dicom-web', poll }],
  }) as never;

describe('remoteNodes[].poll incremental window', () => {
  it('takes the given values', () => {
    const cfg = loadConfig({
      env: {},
      overrides: node({
        overlapMs: 60_000,
        fullScanIntervalMs: 600_000,
        watchMs: 0,
        modalities: ['CR', 'DX'],
        modalityFilter: 'client',
        maxResults: 500,
      }),
    });
    expect(cfg.remoteNodes[0]?.poll).toMatchObject({
      overlapMs: 60_000,
      fullScanIntervalMs: 600_000,
      watchMs: 0,
      modalities: ['CR', 'DX'],
      modalityFilter: 'client',
      maxResults: 500,
    });
  });

  it('reports every bad key at once', () => {
    let err: unknown;
    try {
      loadConfig({
        env: {},
        overrides: node({ overlapMs: -1, modalities: ['ct', 'A\\B'], modalityFilter: 'pacs', maxResults: 1.5 }),
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const msg = String((err as Error).message);
    for (const p of [
      'remoteNodes[0].poll.overlapMs',
      'remoteNodes[0].poll.modalities[0]',
      'remoteNodes[0].poll.modalities[1]',
      'remoteNodes[0].poll.modalityFilter',
      'remoteNodes[0].poll.maxResults',
    ])
      expect(msg).toContain(p);
  });
});
