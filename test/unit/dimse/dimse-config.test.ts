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

describe('dimse config (validated at start-up, every problem reported)', () => {
  it('has no listener by default (the demo listens on no DICOM port)', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.dimse).toEqual({
      maxPduLength: 262144,
      artimMs: 30000,
      idleMs: 60000,
      maxAssociations: 64,
      listeners: [],
    });
  });

  it('reads a listener with host defaulting to loopback', () => {
    const cfg = loadConfig({
      env: {},
      overrides: { dimse: { listeners: [{ aeTitle: 'RADSCRIBE', port: 11112, allowedCallingAeTitles: ['CT01'] }] } },
    });
    expect(cfg.dimse.listeners).toEqual([
      { aeTitle: 'RADSCRIBE', port: 11112, host: '127.0.0.1', allowedCallingAeTitles: ['CT01'] },
    ]);
  });

  it('reports every bad AE title, port, duplicate and unknown key at once', () => {
    const problems = problemsOf({
      dimse: {
        maxPduLength: 10,
        listeners: [
          { aeTitle: 'WAY_TOO_LONG_AE_TITLE', port: 70000 },
          { aeTitle: 'BAD\\AE', port: 11112, allowedCallingAeTitles: ['   ', 'OK'] },
          { aeTitle: 'DUP', port: 11113 },
          { aeTitle: 'DUP', port: 11113, prot: 1 },
          { aeTitle: 'EMPTYLIST', port: 11114, allowedCallingAeTitles: [] },
        ],
      },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^dimse\.maxPduLength: must be an integer/),
        expect.stringMatching(/^dimse\.listeners\[0\]\.aeTitle: not a valid AE title: must be at most 16/),
        expect.stringMatching(/^dimse\.listeners\[0\]\.port: must be an integer from 0 to 65535/),
        expect.stringMatching(/^dimse\.listeners\[1\]\.aeTitle: not a valid AE title: must not contain a backslash/),
        expect.stringMatching(
          /^dimse\.listeners\[1\]\.allowedCallingAeTitles\[0\]: not a valid AE title: must not be all spaces/,
        ),
        'dimse.listeners: duplicate aeTitle "DUP"',
        'dimse.listeners: duplicate host:port "127.0.0.1:11113"',
        expect.stringMatching(/^dimse\.listeners\[3\]\.prot: unknown key/),
        expect.stringMatching(/^dimse\.listeners\[4\]\.allowedCallingAeTitles: must list at least one/),
      ]),
    );
  });
});
