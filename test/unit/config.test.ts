import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyEnvOverrides, loadConfig, mergeConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';

function tmpYaml(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-config-'));
  const f = path.join(dir, 'c.yaml');
  writeFileSync(f, text);
  return f;
}

describe('loadConfig', () => {
  it('loads the embedded defaults and resolves relative paths against the package', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.http.port).toBe(8080);
    expect(path.isAbsolute(cfg.dataDir)).toBe(true);
    expect(cfg.model.bundle.endsWith(path.join('test', 'fixtures', 'models', 'tiny-mllama'))).toBe(true);
    expect(cfg.defaultDestination).toBe('outbox');
  });

  it('applies the file, then RADSCRIBE_* variables, then DATABASE_URL', () => {
    const f = tmpYaml('http:\n  port: 9000\ningest:\n  stabilityWindowMs: 5\n');
    const cfg = loadConfig({
      file: f,
      env: {
        RADSCRIBE_HTTP_PORT: '9100',
        RADSCRIBE_INGEST_STABILITY_WINDOW_MS: '250',
        DATABASE_URL: 'postgresql://u:pw@h/db',
      },
    });
    expect(cfg.http.port).toBe(9100);
    expect(cfg.ingest.stabilityWindowMs).toBe(250);
    expect(cfg.database.url).toBe('postgresql://u:pw@h/db');
  });

  it('parses list values from the environment', () => {
    const cfg = loadConfig({ env: { RADSCRIBE_MODEL_EXECUTION_PROVIDERS: '[cuda, cpu]' } });
    expect(cfg.model.executionProviders).toEqual(['cuda', 'cpu']);
  });

  it('reports every problem with its path in one error', () => {
    const f = tmpYaml(
      [
        'http:',
        '  port: 99999',
        'model:',
        '  executionProviders: [tpu]',
        'remoteNodes:',
        '  - name: pacs',
        '    baseUrl: not a url',
        'destinations:',
        '  - name: back',
        '    type: stow-rs',
        '    node: nowhere',
        'defaultDestination: missing',
      ].join('\n'),
    );
    let err: unknown;
    try {
      loadConfig({ file: f, env: { RADSCRIBE_NOT_A_KEY: '1' } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const problems = (err as ConfigError).problems;
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^http\.port: must be an integer/),
        expect.stringMatching(/^model\.executionProviders: unknown execution provider "tpu"/),
        expect.stringMatching(/^remoteNodes\[0\]\.baseUrl: must be an absolute URL/),
        expect.stringMatching(/^destinations\[0\]\.node: unknown remote node "nowhere"/),
        expect.stringMatching(/^defaultDestination: must name one of destinations/),
        expect.stringMatching(/^RADSCRIBE_NOT_A_KEY: does not name a configuration key/),
      ]),
    );
  });

  it('reports unreadable and malformed files', () => {
    expect(() => loadConfig({ file: '/nonexistent/radscribe.yaml', env: {} })).toThrow(/cannot read/);
    expect(() => loadConfig({ file: tmpYaml('a: [1, 2'), env: {} })).toThrow(/invalid YAML/);
  });

  it('the commented hospital example is valid', () => {
    const cfg = loadConfig({ file: path.join(__dirname, '../../config/example-hospital.yaml'), env: {} });
    expect(cfg.remoteNodes[0]?.auth.passwordEnv).toBe('RADSCRIBE_MAIN_PACS_PASSWORD');
    expect(cfg.routes[0]?.match.modality).toEqual(['MG']);
    expect(cfg.model.executionProviders).toEqual(['cuda', 'cpu']);
  });
});

describe('mergeConfig / applyEnvOverrides', () => {
  it('merges objects deeply and replaces arrays', () => {
    expect(mergeConfig({ a: { b: 1, c: [1] } }, { a: { c: [2] } })).toEqual({ a: { b: 1, c: [2] } });
  });
  it('never reads secrets into the config', () => {
    const problems: string[] = [];
    const out = applyEnvOverrides({ x: 1 }, { RADSCRIBE_MAIN_PACS_PASSWORD: 'secret' }, problems);
    expect(out).toEqual({ x: 1 });
    expect(problems).toEqual([]);
  });
});
