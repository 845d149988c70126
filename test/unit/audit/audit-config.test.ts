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

describe('audit.anchor configuration', () => {
  it('is off by default', () => {
    expect(loadConfig({ env: {} }).audit.anchor).toEqual({
      directory: '',
      intervalSeconds: 3600,
      privateKeyFile: '',
      publicKeyFile: '',
    });
  });

  it('resolves paths and needs a private key with a directory', () => {
    const cfg = loadConfig({
      env: {},
      baseDir: '/srv/rs',
      overrides: { audit: { anchor: { directory: 'anchors', privateKeyFile: 'k.pem', intervalSeconds: 60 } } },
    });
    expect(cfg.audit.anchor).toMatchObject({
      directory: '/srv/rs/anchors',
      privateKeyFile: '/srv/rs/k.pem',
      publicKeyFile: '',
    });
    expect(problemsOf({ audit: { anchor: { directory: '/tmp/a' } } })).toContain(
      'audit.anchor.privateKeyFile: is required when audit.anchor.directory is set',
    );
  });

  it('refuses an unknown key and an out-of-range interval, with their paths', () => {
    const problems = problemsOf({ audit: { anchor: { intervalSecond: 5, intervalSeconds: 0 } } });
    expect(problems.some((p) => p.startsWith('audit.anchor.intervalSecond:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('audit.anchor.intervalSeconds:'))).toBe(true);
  });

  it('takes RADSCRIBE_AUDIT_ANCHOR_INTERVAL_SECONDS from the environment', () => {
    expect(loadConfig({ env: { RADSCRIBE_AUDIT_ANCHOR_INTERVAL_SECONDS: '120' } }).audit.anchor.intervalSeconds).toBe(
      120,
    );
  });
});

describe('audit.export.syslog configuration (ATNA)', () => {
  it('is off by default and resolves file paths against the base directory', () => {
    expect(loadConfig({ env: {} }).audit.export.syslog).toEqual({
      host: '',
      port: 6514,
      caFile: '',
      certFile: '',
      keyFile: '',
      serverName: '',
    });
    const cfg = loadConfig({
      env: {},
      baseDir: '/srv/rs',
      overrides: {
        audit: { export: { syslog: { host: 'arr', caFile: 'ca.pem', certFile: 'c.pem', keyFile: 'k.pem' } } },
      },
    });
    expect(cfg.audit.export.syslog).toEqual({
      host: 'arr',
      port: 6514,
      caFile: '/srv/rs/ca.pem',
      certFile: '/srv/rs/c.pem',
      keyFile: '/srv/rs/k.pem',
      serverName: '',
    });
  });

  it('reports every problem at once: missing CA, lone cert, bad port, unknown key', () => {
    const problems = problemsOf({
      audit: { export: { syslog: { host: 'arr', port: 70_000, certFile: 'c.pem', tls: 'yes' } } },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'audit.export.syslog.caFile: is required when audit.export.syslog.host is set',
        'audit.export.syslog: certFile and keyFile must be given together',
        'audit.export.syslog.port: must be an integer from 1 to 65535',
      ]),
    );
    expect(problems.some((p) => p.startsWith('audit.export.syslog.tls'))).toBe(true);
    expect(problems.length).toBeGreaterThanOrEqual(4);
  });
});
