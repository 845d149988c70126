import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  databaseOptions,
  describeCallOptions,
  dicomLimitsOf,
  dicomwebClientOptions,
  imagePrepOptions,
  jobQueueOptions,
  jobWorkerOptions,
  qidoPollerOptions,
} from '../../src/config/options.js';
import { closestKey, editDistance } from '../../src/config/suggest.js';
import {
  applyEnvOverrides,
  CONFIG_DEFAULTS,
  type LoadConfigOptions,
  loadConfig,
  mergeConfig,
  type RadScribeConfig,
  REMOTE_NODE_DEFAULTS,
} from '../../src/config.js';
import { DEFAULT_CHECKOUT_TIMEOUT_MS, DEFAULT_POOL_SIZE, DEFAULT_STATEMENT_TIMEOUT_MS } from '../../src/db/pool.js';
import { DEFAULT_DICOM_LIMITS } from '../../src/dicom/limits.js';
import { ConfigError, ErrorCode } from '../../src/errors.js';
import { DEFAULT_HARD_TIMEOUT_GRACE_MS } from '../../src/inference/inference-client.js';
import {
  DEFAULT_BACKOFF_BASE_MS,
  DEFAULT_BACKOFF_MAX_MS,
  DEFAULT_MAX_ATTEMPTS,
  JobQueue,
} from '../../src/jobs/job-queue.js';
import { JobKind } from '../../src/jobs/types.js';
import {
  DEFAULT_CONCURRENCY,
  DEFAULT_LEASE_MS,
  DEFAULT_POLL_INTERVAL_MS,
  DEFAULT_STABILITY_WINDOW_MS,
  JobWorker,
} from '../../src/jobs/worker.js';
import {
  DEFAULT_DICOMWEB_STORE_TIMEOUT_MS,
  DEFAULT_DICOMWEB_TIMEOUT_MS,
  DicomwebClient,
} from '../../src/pacs/dicomweb-client.js';
import { QIDO_POLLER_DEFAULTS } from '../../src/pacs/qido-poller.js';
import { DEFAULT_STOW_LIMITS } from '../../src/pacs/stow-router.js';
import { DEFAULT_MULTI_FRAME_FRAMES } from '../../src/pipeline/frame-selection.js';
import { DEFAULT_FRAME_TIMEOUT_MS, DEFAULT_WORKER_MEMORY_MB } from '../../src/pipeline/image-prep-client.js';
import { routeStudy } from '../../src/pipeline/routing.js';
import { type TestDatabase, testDatabase } from '../support/db.js';

const REPO = path.join(__dirname, '../..');
const EXAMPLE = path.join(REPO, 'config/example-hospital.yaml');
const DOCKER = path.join(REPO, 'docker/radscribe.yaml');

function tmpYaml(text: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-config-'));
  const f = path.join(dir, 'c.yaml');
  writeFileSync(f, text);
  return f;
}

/** The problems loadConfig reports (fails the test when it does not throw a ConfigError). */
function problemsOf(opts: LoadConfigOptions): readonly string[] {
  try {
    loadConfig({ env: {}, ...opts });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const NODE = { name: 'pacs', baseUrl: 'http://127.0.0.1:8042/dicom-web' };
const withNode = (node: Record<string, unknown>) => ({
  remoteNodes: [{ ...NODE, ...node }],
});

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

  it('reaches the new keys from the environment', () => {
    const cfg = loadConfig({
      env: { RADSCRIBE_JOBS_CONCURRENCY: '3', RADSCRIBE_IMAGE_PREP_MAX_HEAP_MB: '4096' },
    });
    expect(cfg.jobs.concurrency).toBe(3);
    expect(cfg.imagePrep.maxHeapMb).toBe(4096);
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
    const problems = problemsOf({ file: f, env: { RADSCRIBE_NOT_A_KEY: '1' } });
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
    const cfg = loadConfig({ file: EXAMPLE, env: {} });
    expect(cfg.remoteNodes[0]?.auth.passwordEnv).toBe('RADSCRIBE_MAIN_PACS_PASSWORD');
    expect(cfg.routes[0]?.match.modality).toEqual(['MG']);
    expect(cfg.routes[0]?.name).toBe('mg-research');
    expect(cfg.model.executionProviders).toEqual(['cuda', 'cpu']);
  });

  it('the docker configuration is valid', () => {
    const cfg = loadConfig({ file: DOCKER, env: {} });
    expect(cfg.remoteNodes.map((n) => n.name)).toEqual(['orthanc']);
    expect(cfg.defaultDestination).toBe('orthanc-stow');
  });
});

describe('unknown keys', () => {
  it('names the key meant at the top level', () => {
    expect(problemsOf({ overrides: { modle: { bundle: 'x' } } })).toEqual([
      'modle: unknown key (did you mean "model"?)',
    ]);
  });

  it('names the key meant in nested mappings', () => {
    const problems = problemsOf({
      overrides: {
        database: { poolsize: 3 },
        http: { prot: 1 },
        selection: { multiFrameFrame: 2 },
        jobs: { maxAttempt: 2 },
        imagePrep: { frameTimeout: 5 },
      },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        'database.poolsize: unknown key (did you mean "poolSize"?)',
        'http.prot: unknown key (did you mean "port"?)',
        'selection.multiFrameFrame: unknown key (did you mean "multiFrameFrames"?)',
        'jobs.maxAttempt: unknown key (did you mean "maxAttempts"?)',
        'imagePrep.frameTimeout: unknown key (did you mean "frameTimeoutMs"?)',
      ]),
    );
    expect(problems).toHaveLength(5);
  });

  it('names the key meant in list items, at every depth', () => {
    const problems = problemsOf({
      overrides: {
        remoteNodes: [
          {
            ...NODE,
            baseURL: 'http://x',
            timeoutMS: 100,
            auth: { type: 'basic', username: 'u', passwordEnv: 'RADSCRIBE_P_PASSWORD', paswordEnv: 'X' },
            poll: { enabled: true, intervall: 1000, backoff: { factr: 2 } },
          },
        ],
        destinations: [
          { name: 'outbox', type: 'folder', path: '/tmp/o', pdfCompanon: true },
          { name: 'pacs', type: 'stow-rs', node: 'pacs', sr_profile: 'air' },
        ],
        routes: [
          { name: 'r', mach: {}, destination: 'outbox' },
          { name: 's', match: { modalities: ['CR'] }, destination: 'outbox' },
        ],
      },
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        // baseUrl is also missing: both are said.
        'remoteNodes[0].baseURL: unknown key (did you mean "baseUrl"?)',
        'remoteNodes[0].timeoutMS: unknown key (did you mean "timeoutMs"?)',
        'remoteNodes[0].auth.paswordEnv: unknown key (did you mean "passwordEnv"?)',
        'remoteNodes[0].poll.intervall: unknown key (did you mean "intervalMs"?)',
        'remoteNodes[0].poll.backoff.factr: unknown key (did you mean "factor"?)',
        'destinations[0].pdfCompanon: unknown key (did you mean "pdfCompanion"?)',
        'destinations[1].sr_profile: unknown key (did you mean "srProfile"?)',
        'routes[0].mach: unknown key (did you mean "match"?)',
        'routes[1].match.modalities: unknown key (did you mean "modality"?)',
      ]),
    );
  });

  it('says "unknown key" without a guess when nothing is close', () => {
    expect(problemsOf({ overrides: { http: { xylophone: true } } })).toEqual(['http.xylophone: unknown key']);
  });

  it('leaves QIDO match keys alone: they are data, not configuration', () => {
    const cfg = loadConfig({
      env: {},
      overrides: withNode({ poll: { query: { ModalitiesInStudy: 'CR', '00081030': '*CHEST*' } } }),
    });
    expect(cfg.remoteNodes[0]?.poll.query).toEqual({ ModalitiesInStudy: 'CR', '00081030': '*CHEST*' });
  });

  it('names a key that its item type does not use', () => {
    const problems = problemsOf({
      overrides: {
        ...withNode({ auth: { type: 'bearer', tokenEnv: 'RADSCRIBE_T_TOKEN', username: 'u' } }),
        destinations: [{ name: 'outbox', type: 'folder', path: '/tmp/o', node: 'pacs' }],
      },
    });
    expect(problems).toEqual([
      'remoteNodes[0].auth.username: only used with auth type basic',
      'destinations[0].node: only used with type stow-rs',
    ]);
  });

  it('[issue 11] stow-rs destinations read verifyStored (default always); other values and folders are refused', () => {
    const stow = (extra: Record<string, unknown>) => ({
      ...withNode({}),
      destinations: [{ name: 'pacs-stow', type: 'stow-rs', node: 'pacs', ...extra }],
      defaultDestination: 'pacs-stow',
    });
    const dest = (extra: Record<string, unknown>) => loadConfig({ env: {}, overrides: stow(extra) }).destinations[0];
    expect(dest({})).toMatchObject({ verifyStored: 'always' });
    expect(dest({ verifyStored: 'on-duplicate' })).toMatchObject({ verifyStored: 'on-duplicate' });
    expect(problemsOf({ overrides: stow({ verifyStored: 'never' }) })).toEqual([
      'destinations[0].verifyStored: must be one of always, on-duplicate',
    ]);
    expect(
      problemsOf({
        overrides: { destinations: [{ name: 'outbox', type: 'folder', path: '/tmp/o', verifyStored: 'always' }] },
      }),
    ).toEqual(['destinations[0].verifyStored: only used with type stow-rs']);
  });

  it('validates every dicomLimits key and their relation (issue 9)', () => {
    const problems = problemsOf({
      overrides: {
        dicomLimits: {
          maxSequenceDepth: 0,
          maxInflationRatio: 1.5,
          maxDecodedFrameBytes: 1 << 20,
          maxDecodedInstanceBytes: 4096,
          maxElemnts: 5,
        },
      },
    });
    expect(problems).toEqual([
      'dicomLimits.maxInflationRatio: must be an integer from 2 to 1000000',
      'dicomLimits.maxSequenceDepth: must be an integer from 1 to 10000',
      'dicomLimits.maxDecodedInstanceBytes: must not be less than dicomLimits.maxDecodedFrameBytes',
      'dicomLimits.maxElemnts: unknown key (did you mean "maxElements"?)',
    ]);
    expect(loadConfig({ env: { RADSCRIBE_DICOM_LIMITS_MAX_SEQUENCE_DEPTH: '8' } }).dicomLimits.maxSequenceDepth).toBe(
      8,
    );
  });

  it('collects unknown keys with every other problem in one error', () => {
    const problems = problemsOf({ overrides: { modle: {}, http: { port: -1 } }, env: { RADSCRIBE_HTTP_PROT: '1' } });
    expect(problems).toEqual([
      'RADSCRIBE_HTTP_PROT: does not name a configuration key (did you mean "RADSCRIBE_HTTP_PORT"?)',
      'http.port: must be an integer from 0 to 65535',
      'modle: unknown key (did you mean "model"?)',
    ]);
    expect(() => loadConfig({ env: {}, overrides: { modle: {} } })).toThrow(
      expect.objectContaining({ code: ErrorCode.ConfigInvalid }),
    );
  });

  it('names the environment variable meant', () => {
    expect(problemsOf({ env: { RADSCRIBE_JOBS_MAX_ATTEMPT: '3' } })).toEqual([
      'RADSCRIBE_JOBS_MAX_ATTEMPT: does not name a configuration key (did you mean "RADSCRIBE_JOBS_MAX_ATTEMPTS"?)',
    ]);
    expect(problemsOf({ env: { RADSCRIBE_NOPE: '1' } })).toEqual(['RADSCRIBE_NOPE: does not name a configuration key']);
  });

  it('a misspelled key in a file is refused, not silently defaulted', () => {
    const f = tmpYaml('ingest:\n  stabilityWindowMS: 90000\n');
    expect(problemsOf({ file: f })).toEqual([
      'ingest.stabilityWindowMS: unknown key (did you mean "stabilityWindowMs"?)',
    ]);
  });
});

describe('suggestions', () => {
  it('measures transpositions as one edit', () => {
    expect(editDistance('modle', 'model')).toBe(1);
    expect(editDistance('port', 'prot')).toBe(1);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });
  it('matches ignoring case and separators, by distance, and by stem', () => {
    expect(closestKey('pool_size', ['poolSize', 'url'])).toBe('poolSize');
    expect(closestKey('interval', ['intervalMs', 'enabled'])).toBe('intervalMs');
    expect(closestKey('hots', ['host', 'port'])).toBe('host');
    expect(closestKey('xyz', ['host', 'port'])).toBeUndefined();
    expect(closestKey('backoffMs', ['backoffBaseMs', 'backoffMaxMs', 'leaseMs'])).toBeDefined();
  });
});

/** Leaf paths of a JSON-shaped object (not into lists). */
function leafPaths(o: Record<string, unknown>, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v)
      ? leafPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`],
  );
}

/** config/example-hospital.yaml with its commented `key: value` lines uncommented. */
function uncommentedExample(): string {
  return readFileSync(EXAMPLE, 'utf8')
    .split('\n')
    .map((line) => line.replace(/^(\s*)# ?(\s*[A-Za-z][A-Za-z0-9]*:(\s.*)?)$/, '$1$2'))
    .join('\n');
}

describe('defaults in one place', () => {
  it('config/default.yaml equals CONFIG_DEFAULTS', () => {
    const yaml = parseYaml(readFileSync(path.join(REPO, 'config/default.yaml'), 'utf8')) as unknown;
    expect(yaml).toEqual(CONFIG_DEFAULTS);
  });

  it('CONFIG_DEFAULTS are the consumers’ own exported defaults', () => {
    const d = CONFIG_DEFAULTS;
    expect(d.database.poolSize).toBe(DEFAULT_POOL_SIZE);
    expect(d.database.statementTimeoutMs).toBe(DEFAULT_STATEMENT_TIMEOUT_MS);
    expect(d.database.checkoutTimeoutMs).toBe(DEFAULT_CHECKOUT_TIMEOUT_MS);
    expect(d.ingest).toEqual({ stabilityWindowMs: DEFAULT_STABILITY_WINDOW_MS, ...DEFAULT_STOW_LIMITS });
    expect(d.model.hardTimeoutGraceMs).toBe(DEFAULT_HARD_TIMEOUT_GRACE_MS);
    expect(d.imagePrep).toEqual({ frameTimeoutMs: DEFAULT_FRAME_TIMEOUT_MS, maxHeapMb: DEFAULT_WORKER_MEMORY_MB });
    expect(d.selection.multiFrameFrames).toBe(DEFAULT_MULTI_FRAME_FRAMES);
    expect(d.jobs).toEqual({
      pollIntervalMs: DEFAULT_POLL_INTERVAL_MS,
      leaseMs: DEFAULT_LEASE_MS,
      concurrency: DEFAULT_CONCURRENCY,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      backoffBaseMs: DEFAULT_BACKOFF_BASE_MS,
      backoffMaxMs: DEFAULT_BACKOFF_MAX_MS,
    });
    expect(REMOTE_NODE_DEFAULTS).toEqual({
      timeoutMs: DEFAULT_DICOMWEB_TIMEOUT_MS,
      storeTimeoutMs: DEFAULT_DICOMWEB_STORE_TIMEOUT_MS,
      poll: {
        enabled: false,
        intervalMs: QIDO_POLLER_DEFAULTS.intervalMs,
        lookbackDays: QIDO_POLLER_DEFAULTS.lookbackDays,
        pageSize: QIDO_POLLER_DEFAULTS.pageSize,
        maxPages: QIDO_POLLER_DEFAULTS.maxPages,
        backoff: QIDO_POLLER_DEFAULTS.backoff,
        maxRetrieveAttempts: QIDO_POLLER_DEFAULTS.maxRetrieveAttempts,
        overlapMs: QIDO_POLLER_DEFAULTS.overlapMs,
        fullScanIntervalMs: QIDO_POLLER_DEFAULTS.fullScanIntervalMs,
        watchMs: QIDO_POLLER_DEFAULTS.watchMs,
        modalities: [],
        modalityFilter: 'server',
        maxResults: 0,
      },
    });
    expect(QIDO_POLLER_DEFAULTS.maxRetrieveAttempts).toBe(5);
  });

  it('a remote node without optional keys gets REMOTE_NODE_DEFAULTS', () => {
    const node = loadConfig({ env: {}, overrides: withNode({}) }).remoteNodes[0];
    expect(node).toEqual({
      ...NODE,
      auth: { type: 'none' },
      timeoutMs: REMOTE_NODE_DEFAULTS.timeoutMs,
      storeTimeoutMs: REMOTE_NODE_DEFAULTS.storeTimeoutMs,
      poll: { ...REMOTE_NODE_DEFAULTS.poll, query: {} },
    });
  });

  it('config/example-hospital.yaml shows every key, and its commented lines are the defaults', () => {
    const example = parseYaml(uncommentedExample()) as Record<string, unknown>;
    const shown = new Set(leafPaths(example));
    const missing = leafPaths(CONFIG_DEFAULTS as unknown as Record<string, unknown>).filter((p) => !shown.has(p));
    expect(missing).toEqual([]);
    const itemKeys = leafPaths(REMOTE_NODE_DEFAULTS as unknown as Record<string, unknown>);
    const node = (example.remoteNodes as Record<string, unknown>[])[0] as Record<string, unknown>;
    expect(itemKeys.filter((p) => !new Set(leafPaths(node)).has(p))).toEqual([]);

    // Uncommented, it is still valid, and each formerly commented key holds its default.
    const commentedOnly = loadConfig({ file: tmpYaml(uncommentedExample()), env: {} });
    const plain = loadConfig({ file: EXAMPLE, env: {} });
    expect(commentedOnly.imagePrep).toEqual(CONFIG_DEFAULTS.imagePrep);
    expect(commentedOnly.jobs).toEqual(plain.jobs);
    expect(commentedOnly.model).toEqual(plain.model);
    expect(commentedOnly.http).toEqual(plain.http);
    expect(commentedOnly.database).toEqual(plain.database);
    const { transferSyntax, ...poll } = commentedOnly.remoteNodes[0]?.poll ?? {};
    expect(transferSyntax).toBe('*');
    expect(poll).toEqual(plain.remoteNodes[0]?.poll);
  });
});

describe('new keys are validated', () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['database.statementTimeoutMs', { database: { statementTimeoutMs: -1 } }, /must be an integer/],
    ['database.checkoutTimeoutMs', { database: { checkoutTimeoutMs: 0 } }, /must be an integer from 1/],
    ['http.requestTimeoutMs', { http: { requestTimeoutMs: 'soon' } }, /must be an integer/],
    ['model.hardTimeoutGraceMs', { model: { hardTimeoutGraceMs: 1.5 } }, /must be an integer/],
    ['imagePrep.frameTimeoutMs', { imagePrep: { frameTimeoutMs: 0 } }, /must be an integer from 100/],
    ['imagePrep.maxHeapMb', { imagePrep: { maxHeapMb: 1 } }, /must be an integer from 64/],
    ['selection.multiFrameFrames', { selection: { multiFrameFrames: 0 } }, /must be an integer from 1/],
    ['jobs.concurrency', { jobs: { concurrency: 0 } }, /must be an integer from 1 to 64/],
    ['jobs.backoffBaseMs', { jobs: { backoffBaseMs: -5 } }, /must be an integer/],
    [
      'jobs.backoffMaxMs',
      { jobs: { backoffBaseMs: 5000, backoffMaxMs: 10 } },
      /must not be less than jobs\.backoffBaseMs/,
    ],
    ['remoteNodes[0].storeTimeoutMs', withNode({ storeTimeoutMs: 5 }), /must be an integer from 100/],
    ['remoteNodes[0].poll.pageSize', withNode({ poll: { pageSize: 0 } }), /must be an integer from 1/],
    ['remoteNodes[0].poll.maxPages', withNode({ poll: { maxPages: 'all' } }), /must be an integer/],
    ['remoteNodes[0].poll.backoff.initialMs', withNode({ poll: { backoff: { initialMs: 0 } } }), /must be an integer/],
    [
      'remoteNodes[0].poll.backoff.maxMs',
      withNode({ poll: { backoff: { initialMs: 5000, maxMs: 100 } } }),
      /must not be less than/,
    ],
    [
      'remoteNodes[0].poll.maxRetrieveAttempts',
      withNode({ poll: { maxRetrieveAttempts: 0 } }),
      /must be an integer from 1 to 1000/,
    ],
    [
      'remoteNodes[0].poll.maxRetrieveAttempts',
      withNode({ poll: { maxRetrieveAttempts: 'many' } }),
      /must be an integer/,
    ],
    ['remoteNodes[0].poll.backoff.factor', withNode({ poll: { backoff: { factor: 0.5 } } }), /must be a number from 1/],
    [
      'routes',
      {
        routes: [
          { name: 'a', match: {}, destination: 'outbox' },
          { name: 'a', match: {}, destination: 'outbox' },
        ],
      },
      /duplicate name "a"/,
    ],
  ];
  it.each(cases)('%s: a bad value is named by its path', (p, overrides, message) => {
    const problems = problemsOf({ overrides: overrides as never });
    expect(problems).toHaveLength(1);
    expect(problems[0]?.startsWith(`${p}: `)).toBe(true);
    expect(problems[0]).toMatch(message);
  });

  it('good values arrive in the typed config', () => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        database: { statementTimeoutMs: 0 },
        http: { requestTimeoutMs: 3_600_000 },
        model: { hardTimeoutGraceMs: 5000 },
        imagePrep: { frameTimeoutMs: 1000, maxHeapMb: 512 },
        selection: { multiFrameFrames: 3 },
        jobs: { concurrency: 2, backoffBaseMs: 100, backoffMaxMs: 1000 },
        ...withNode({
          storeTimeoutMs: 90_000,
          poll: { pageSize: 500, maxPages: 3, backoff: { initialMs: 100, maxMs: 200, factor: 1.5 } },
        }),
      },
    });
    expect(cfg.database.statementTimeoutMs).toBe(0);
    expect(cfg.http.requestTimeoutMs).toBe(3_600_000);
    expect(cfg.model.hardTimeoutGraceMs).toBe(5000);
    expect(cfg.imagePrep).toEqual({ frameTimeoutMs: 1000, maxHeapMb: 512 });
    expect(cfg.selection.multiFrameFrames).toBe(3);
    expect(cfg.jobs).toMatchObject({ concurrency: 2, backoffBaseMs: 100, backoffMaxMs: 1000 });
    expect(cfg.remoteNodes[0]).toMatchObject({
      storeTimeoutMs: 90_000,
      poll: { pageSize: 500, maxPages: 3, backoff: { initialMs: 100, maxMs: 200, factor: 1.5 } },
    });
  });
});

describe('every key reaches its consumer', () => {
  const cfg: RadScribeConfig = loadConfig({
    env: {},
    overrides: {
      database: { poolSize: 7, statementTimeoutMs: 1234, checkoutTimeoutMs: 4321 },
      model: { timeoutMs: 1000, hardTimeoutGraceMs: 250, maxNewTokens: 9 },
      imagePrep: { frameTimeoutMs: 2000, maxHeapMb: 300 },
      dicomLimits: { maxSequenceDepth: 12, maxElements: 3456 },
      jobs: {
        pollIntervalMs: 50,
        leaseMs: 5000,
        concurrency: 2,
        maxAttempts: 3,
        backoffBaseMs: 60_000,
        backoffMaxMs: 120_000,
      },
      ingest: { stabilityWindowMs: 10 },
      ...withNode({
        timeoutMs: 111,
        storeTimeoutMs: 222,
        poll: { pageSize: 7, maxPages: 2, maxRetrieveAttempts: 3, transferSyntax: '*' },
      }),
    },
  });

  it('maps each slice onto the consumer’s options object', () => {
    expect(databaseOptions(cfg)).toEqual({
      dataDir: cfg.dataDir,
      poolSize: 7,
      statementTimeoutMs: 1234,
      checkoutTimeoutMs: 4321,
    });
    expect(describeCallOptions(cfg)).toEqual({ maxNewTokens: 9, timeoutMs: 1000, hardTimeoutMs: 1250 });
    const limits = { ...DEFAULT_DICOM_LIMITS, maxSequenceDepth: 12, maxElements: 3456 };
    expect(imagePrepOptions(cfg)).toEqual({ frameTimeoutMs: 2000, maxOldGenerationSizeMb: 300, limits });
    expect(dicomLimitsOf(cfg)).toEqual(limits);
    expect(jobWorkerOptions(cfg)).toEqual({ pollIntervalMs: 50, leaseMs: 5000, concurrency: 2, stabilityWindowMs: 10 });
    const node = cfg.remoteNodes[0] as RadScribeConfig['remoteNodes'][number];
    expect(dicomwebClientOptions(node)).toEqual({ baseUrl: NODE.baseUrl, timeoutMs: 111, storeTimeoutMs: 222 });
    expect(qidoPollerOptions(node)).toEqual({
      intervalMs: REMOTE_NODE_DEFAULTS.poll.intervalMs,
      lookbackDays: REMOTE_NODE_DEFAULTS.poll.lookbackDays,
      pageSize: 7,
      maxPages: 2,
      backoff: REMOTE_NODE_DEFAULTS.poll.backoff,
      maxRetrieveAttempts: 3,
      transferSyntax: '*',
      overlapMs: REMOTE_NODE_DEFAULTS.poll.overlapMs,
      fullScanIntervalMs: REMOTE_NODE_DEFAULTS.poll.fullScanIntervalMs,
      watchMs: REMOTE_NODE_DEFAULTS.poll.watchMs,
      modalities: [],
      modalityFilter: 'server',
      maxResults: 0,
    });
  });

  it('storeTimeoutMs bounds STOW-RS requests, timeoutMs the others', async () => {
    // A PACS that answers searches at once but a store only after 400 ms.
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const answer = () => {
          res.writeHead(200, { 'content-type': 'application/dicom+json' });
          res.end('[]');
        };
        if (req.method === 'POST') setTimeout(answer, 400).unref();
        else answer();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const node = loadConfig({
        env: {},
        overrides: withNode({ baseUrl: `http://127.0.0.1:${port}`, timeoutMs: 5000, storeTimeoutMs: 100 }),
      }).remoteNodes[0] as RadScribeConfig['remoteNodes'][number];
      const client = new DicomwebClient(dicomwebClientOptions(node));
      await expect(client.searchForStudies()).resolves.toEqual([]);
      await expect(client.storeInstances('2.25.1', [new Uint8Array(200)])).rejects.toMatchObject({
        code: ErrorCode.PacsUnavailable,
        message: expect.stringMatching(/timed out after 100 ms/),
      });
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('routes[].name is reported with the routing decision', () => {
    const routes = [
      { name: 'mg-research', match: { modality: ['MG'] }, destination: 'research' },
      { name: 'everything-else', match: {}, destination: 'pacs' },
    ];
    expect(routeStudy(routes, 'outbox', ['mg'])).toEqual({ destination: 'research', route: 'mg-research' });
    expect(routeStudy(routes, 'outbox', ['CT'])).toEqual({ destination: 'pacs', route: 'everything-else' });
    expect(routeStudy([], 'outbox', ['CT'])).toEqual({ destination: 'outbox', route: null });
  });

  it('routes[].match.calledAeTitle: the local AE the study was sent to, and-ed with modality', () => {
    const routes = [
      { name: 'ct-ai-ct', match: { modality: ['CT'], calledAeTitle: ['CT_AI'] }, destination: 'ct-ai' },
      { name: 'any-ct-ai', match: { calledAeTitle: ['CT_AI', 'CT_AI2'] }, destination: 'ct-ai-other' },
    ];
    expect(routeStudy(routes, 'outbox', ['CT'], ['CT_AI'])).toEqual({ destination: 'ct-ai', route: 'ct-ai-ct' });
    expect(routeStudy(routes, 'outbox', ['MR'], ['CT_AI2 '])).toEqual({
      destination: 'ct-ai-other',
      route: 'any-ct-ai',
    });
    // Case-sensitive (PS3.5 AE VR); no called AE (STOW-RS to /dicomweb/studies): the default.
    expect(routeStudy(routes, 'outbox', ['CT'], ['ct_ai'])).toEqual({ destination: 'outbox', route: null });
    expect(routeStudy(routes, 'outbox', ['CT'])).toEqual({ destination: 'outbox', route: null });
    expect(
      problemsOf({
        overrides: { routes: [{ name: 'r', match: { calledAeTitle: ['A'.repeat(17)] }, destination: 'outbox' }] },
      }),
    ).toEqual(['routes[0].match.calledAeTitle[0]: not a valid AE title: must be at most 16 characters']);
  });

  describe('in the jobs table', () => {
    let db: TestDatabase;
    beforeAll(async () => {
      db = await testDatabase();
    });
    afterAll(() => db?.close());

    it('jobs.maxAttempts becomes max_attempts at enqueue, and the backoff keys drive the retry delay', async () => {
      const queue = new JobQueue(db.pool, jobQueueOptions(cfg));
      const job = await queue.enqueue(db.pool, {
        kind: JobKind.DescribeStudy,
        studyInstanceUid: '2.25.1001',
        payload: { trigger: 'manual' },
      });
      expect(job?.maxAttempts).toBe(3);
      const claimed = await queue.claimNext('w1', 60_000);
      expect(claimed?.id).toBe(job?.id);
      const failed = await queue.fail(claimed?.id as number, ErrorCode.PacsUnavailable, 'PACS down', 'w1');
      const { rows } = await db.pool.query<{ delay_ms: number }>(
        `SELECT extract(epoch FROM run_at - updated_at) * 1000 AS delay_ms FROM jobs WHERE id = $1`,
        [job?.id],
      );
      expect(failed?.state).toBe('queued');
      // First retry after backoffBaseMs (60 s here; the default would be 10 s).
      expect(Number(rows[0]?.delay_ms)).toBeCloseTo(60_000, -2);
    });

    it('jobs.concurrency jobs run at the same time', async () => {
      const queue = new JobQueue(db.pool, jobQueueOptions(cfg));
      for (const uid of ['2.25.2001', '2.25.2002'])
        await queue.enqueue(db.pool, {
          kind: JobKind.DescribeStudy,
          studyInstanceUid: uid,
          payload: { trigger: 'manual' },
        });
      let running = 0;
      let peak = 0;
      let release: () => void = () => undefined;
      const bothIn = new Promise<void>((resolve) => {
        release = resolve;
      });
      const worker = new JobWorker({
        pool: db.pool,
        queue,
        ...jobWorkerOptions(cfg),
        handler: async () => {
          running++;
          peak = Math.max(peak, running);
          // Each handler waits until two are in flight at once; with concurrency 1 this never happens.
          if (running === 2) release();
          await Promise.race([bothIn, new Promise((r) => setTimeout(r, 5000).unref())]);
          running--;
          return null;
        },
      });
      worker.start();
      try {
        await Promise.race([bothIn, new Promise((r) => setTimeout(r, 10_000).unref())]);
      } finally {
        await worker.stop();
      }
      expect(peak).toBe(2);
    });
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
