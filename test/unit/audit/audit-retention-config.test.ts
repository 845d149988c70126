import { loadConfig } from '../../../src/config.js';
import { ConfigError } from '../../../src/errors.js';

function problemsOf(overrides: Record<string, unknown>): readonly string[] {
  try {
    loadConfig({ env: {}, overrides: overrides as never });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  return [];
}

describe('audit.retention configuration', () => {
  it('is off by default', () => {
    expect(loadConfig({ env: {} }).audit.retention).toEqual({
      periodDays: 0,
      archiveDirectory: '',
      intervalSeconds: 86_400,
      segmentRows: 100_000,
    });
  });

  it('resolves the archive directory against the base directory', () => {
    const cfg = loadConfig({
      env: {},
      baseDir: '/srv/rs',
      overrides: {
        audit: {
          anchor: { privateKeyFile: 'k.pem' },
          retention: { periodDays: 3650, archiveDirectory: 'archive', segmentRows: 50_000 },
        },
      },
    });
    expect(cfg.audit.retention).toEqual({
      periodDays: 3650,
      archiveDirectory: '/srv/rs/archive',
      intervalSeconds: 86_400,
      segmentRows: 50_000,
    });
  });

  it('reports every problem at once, with its path', () => {
    const problems = problemsOf({
      audit: { retention: { periodDays: 30, intervalSeconds: 1, segmentRows: 0, segmentsRows: 5 } },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'audit.retention.archiveDirectory: is required when audit.retention.periodDays is set',
        'audit.anchor.privateKeyFile: is required when audit.retention.periodDays is set (it signs the archives)',
        'audit.retention.intervalSeconds: must be an integer from 60 to 2592000',
        'audit.retention.segmentRows: must be an integer from 1 to 100000000',
      ]),
    );
    expect(problems.some((p) => p.startsWith('audit.retention.segmentsRows: unknown key'))).toBe(true);
    expect(problemsOf({ audit: { retention: { periodDays: -1 } } })).toContain(
      'audit.retention.periodDays: must be an integer from 0 to 36500',
    );
  });

  it('takes RADSCRIBE_AUDIT_RETENTION_PERIOD_DAYS from the environment', () => {
    expect(
      loadConfig({
        env: {
          RADSCRIBE_AUDIT_RETENTION_PERIOD_DAYS: '365',
          RADSCRIBE_AUDIT_RETENTION_ARCHIVE_DIRECTORY: '/srv/a',
          RADSCRIBE_AUDIT_ANCHOR_PRIVATE_KEY_FILE: '/etc/k.pem',
        },
      }).audit.retention.periodDays,
    ).toBe(365);
  });
});
