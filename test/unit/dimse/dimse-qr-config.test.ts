import { loadConfig } from '../../../src/config.js';
import { ConfigError } from '../../../src/errors.js';

function problemsOf(overrides: Record<string, unknown>): readonly string[] {
  try {
    loadConfig({ env: {}, overrides: overrides as never });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const listeners = { listeners: [{ aeTitle: 'RADSCRIBE', port: 11112 }] };

describe('remoteNodes[].dimse (src/config/dimse-qr.ts)', () => {
  it('a DIMSE-only node needs no baseUrl; defaults filled in', () => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        dimse: listeners,
        remoteNodes: [
          { name: 'pacs', dimse: { aeTitle: 'PACS', host: '10.0.0.5', port: 104, moveDestination: 'RADSCRIBE' } },
        ],
      } as never,
    });
    const n = cfg.remoteNodes[0];
    expect(n?.baseUrl).toBe('');
    expect(n?.dimse).toEqual({
      aeTitle: 'PACS',
      host: '10.0.0.5',
      port: 104,
      callingAeTitle: 'RADSCRIBE',
      operations: ['echo', 'find', 'move'],
      moveDestination: 'RADSCRIBE',
      connectTimeoutMs: 10_000,
      associationTimeoutMs: 30_000,
      responseTimeoutMs: 60_000,
      qr: {
        enabled: false,
        intervalMs: 60_000,
        lookbackMinutes: 1440,
        modalities: [],
        maxResults: 500,
        findTimeLimitMs: 120_000,
        backoff: { initialMs: 5_000, maxMs: 300_000, factor: 2 },
        maxRetrieveAttempts: 5,
      },
    });
  });

  it('reports every problem at once: AE titles, port, operations, move destination not ours, modalities, QIDO without baseUrl, unknown keys', () => {
    const problems = problemsOf({
      dimse: listeners,
      remoteNodes: [
        {
          name: 'pacs',
          poll: { enabled: true },
          dimse: {
            aeTitle: 'A\\B',
            host: 'h',
            port: 70000,
            operations: ['find', 'fetch'],
            moveDestination: 'ELSEWHERE',
            characterSet: 'ISO_IR 6',
            qr: { enabled: true, modalities: ['ct'], lookbak: 5 },
          },
        },
        { name: 'other', dimse: { aeTitle: 'X', host: 'h', port: 104, operations: ['move'] } },
      ],
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^remoteNodes\[0\]\.dimse\.aeTitle: not a valid AE title/),
        expect.stringMatching(/^remoteNodes\[0\]\.dimse\.port: must be an integer from 1 to 65535/),
        expect.stringMatching(/^remoteNodes\[0\]\.dimse\.operations: "fetch" is not one of/),
        expect.stringMatching(/^remoteNodes\[0\]\.dimse\.characterSet: must be one of ISO_IR 100, ISO_IR 192/),
        expect.stringMatching(/^remoteNodes\[0\]\.dimse\.qr\.modalities: "ct" is not a modality code/),
        expect.stringMatching(
          /^remoteNodes\[0\]\.dimse\.qr\.enabled: the C-FIND\/C-MOVE poller needs operations find and move/,
        ),
        expect.stringMatching(
          /^remoteNodes\[0\]\.dimse\.moveDestination: "ELSEWHERE" is not one of dimse\.listeners\[\]\.aeTitle \(RADSCRIBE\)/,
        ),
        expect.stringMatching(/^remoteNodes\[0\]\.poll\.enabled: the QIDO-RS poller needs a baseUrl/),
        expect.stringMatching(/lookbak/),
        expect.stringMatching(/^remoteNodes\[1\]\.dimse\.moveDestination: is required when operations include move/),
      ]),
    );
  });

  it('a node without dimse still needs its baseUrl', () => {
    expect(problemsOf({ remoteNodes: [{ name: 'web' }] })).toEqual(
      expect.arrayContaining([expect.stringMatching(/^remoteNodes\[0\]\.baseUrl/)]),
    );
  });
});
