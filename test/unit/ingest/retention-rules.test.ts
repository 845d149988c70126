import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type LoadConfigOptions, loadConfig } from '../../../src/config.js';
import { ConfigError, ErrorCode } from '../../../src/errors.js';
import { DiskGuard, StorageFullError } from '../../../src/ingest/disk-guard.js';
import { type RetentionRule, retentionAgeMs, ruleForStudy, ruleMatchesSource } from '../../../src/ingest/retention.js';
import { StudyState } from '../../../src/ingest/study-lifecycle.js';

const DAY = 86_400_000;
const rule = (r: Partial<RetentionRule> & Pick<RetentionRule, 'via'>): RetentionRule => ({
  name: r.name ?? `r-${r.via}`,
  exportedAfterDays: 7,
  ...r,
});

// [REQ-RET-01] Retention rules: per source, only what a rule names.
describe('retention rule matching', () => {
  const xray = rule({ name: 'xray', via: 'c-store', callingAeTitles: ['XRAY_ROOM_1', 'XRAY_2'] });
  const pacs = rule({ name: 'pacs', via: 'wado-rs', remoteNodes: ['main-pacs'] });
  const anyStow = rule({ name: 'stow', via: 'stow-rs' });
  const alice = rule({ name: 'alice', via: 'stow-rs', users: ['alice'] });

  it('matches by how the instance arrived and, when listed, by who sent it', () => {
    expect(ruleMatchesSource(xray, { via: 'c-store', actor: 'XRAY_ROOM_1' })).toBe(true);
    expect(ruleMatchesSource(xray, { via: 'c-store', actor: 'CT_1' })).toBe(false);
    expect(ruleMatchesSource(xray, { via: 'c-store', actor: null })).toBe(false);
    // The same name arriving another way is another source.
    expect(ruleMatchesSource(xray, { via: 'stow-rs', actor: 'XRAY_ROOM_1' })).toBe(false);
    expect(ruleMatchesSource(pacs, { via: 'wado-rs', actor: 'main-pacs' })).toBe(true);
    expect(ruleMatchesSource(pacs, { via: 'wado-rs', actor: 'other-pacs' })).toBe(false);
    expect(ruleMatchesSource(anyStow, { via: 'stow-rs', actor: null })).toBe(true);
    expect(ruleMatchesSource(anyStow, { via: 'stow-rs', actor: 'bob' })).toBe(true);
    expect(ruleMatchesSource(alice, { via: 'stow-rs', actor: 'bob' })).toBe(false);
    expect(ruleMatchesSource(alice, { via: 'stow-rs', actor: 'alice' })).toBe(true);
  });

  it('AE titles compare without their insignificant leading and trailing spaces (PS3.5 AE)', () => {
    expect(ruleMatchesSource(xray, { via: 'c-store', actor: ' XRAY_2   ' })).toBe(true);
    // …but user names are compared exactly.
    expect(ruleMatchesSource(alice, { via: 'stow-rs', actor: 'alice ' })).toBe(false);
  });

  it('a study matches only a rule that names every one of its sources; the first such rule wins', () => {
    const rules = [alice, xray, anyStow];
    expect(ruleForStudy(rules, [{ via: 'c-store', actor: 'XRAY_2' }])?.name).toBe('xray');
    expect(ruleForStudy(rules, [{ via: 'stow-rs', actor: 'alice' }])?.name).toBe('alice');
    expect(ruleForStudy(rules, [{ via: 'stow-rs', actor: 'bob' }])?.name).toBe('stow');
    // Mixed: one instance from a source no single rule covers → the whole study is kept.
    expect(
      ruleForStudy(rules, [
        { via: 'c-store', actor: 'XRAY_2' },
        { via: 'stow-rs', actor: 'alice' },
      ]),
    ).toBeUndefined();
    expect(ruleForStudy(rules, [{ via: 'wado-rs', actor: 'main-pacs' }])).toBeUndefined();
    expect(ruleForStudy(rules, [])).toBeUndefined();
    expect(ruleForStudy([], [{ via: 'stow-rs', actor: null }])).toBeUndefined();
  });

  it('ages: exported after exportedAfterDays; failed only with failedAfterDays; nothing else ever', () => {
    const r = rule({ via: 'stow-rs', exportedAfterDays: 2, failedAfterDays: 30 });
    expect(retentionAgeMs(r, StudyState.Exported)).toBe(2 * DAY);
    expect(retentionAgeMs(r, StudyState.Failed)).toBe(30 * DAY);
    expect(retentionAgeMs(rule({ via: 'stow-rs' }), StudyState.Failed)).toBeUndefined();
    for (const s of [
      StudyState.Receiving,
      StudyState.Stable,
      StudyState.Queued,
      StudyState.Processing,
      StudyState.Described,
      StudyState.Expunged,
    ])
      expect(retentionAgeMs(r, s)).toBeUndefined();
  });
});

function problemsOf(opts: LoadConfigOptions): readonly string[] {
  try {
    loadConfig({ env: {}, ...opts });
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected a ConfigError');
}

const NODE = { name: 'main-pacs', baseUrl: 'http://127.0.0.1:8042/dicom-web' };

describe('storage and retention configuration', () => {
  it('defaults: 1 GiB reserve, 5 % watermark, hourly retention, no rules (nothing removed)', () => {
    const cfg = loadConfig({ env: {} });
    expect(cfg.storage).toEqual({ reserveBytes: 1024 ** 3, watermarkPercent: 5 });
    expect(cfg.retention).toEqual({ intervalMs: 3_600_000, rules: [] });
  });

  it('good rules arrive typed', () => {
    const cfg = loadConfig({
      env: {},
      overrides: {
        remoteNodes: [NODE],
        storage: { reserveBytes: 0, watermarkPercent: 12.5 },
        retention: {
          intervalMs: 60_000,
          rules: [
            { name: 'x', via: 'c-store', callingAeTitles: ['XRAY_1'], exportedAfterDays: 7 },
            { name: 'p', via: 'wado-rs', remoteNodes: ['main-pacs'], exportedAfterDays: 0.5, failedAfterDays: 30 },
            { name: 's', via: 'stow-rs', users: ['alice'], exportedAfterDays: 1 },
          ],
        },
      },
    });
    expect(cfg.storage).toEqual({ reserveBytes: 0, watermarkPercent: 12.5 });
    expect(cfg.retention.rules).toEqual([
      { name: 'x', via: 'c-store', callingAeTitles: ['XRAY_1'], exportedAfterDays: 7 },
      { name: 'p', via: 'wado-rs', remoteNodes: ['main-pacs'], exportedAfterDays: 0.5, failedAfterDays: 30 },
      { name: 's', via: 'stow-rs', users: ['alice'], exportedAfterDays: 1 },
    ]);
  });

  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['storage.reserveBytes', { storage: { reserveBytes: -1 } }, /must be an integer from 0/],
    ['storage.watermarkPercent', { storage: { watermarkPercent: 100 } }, /must be a number from 0 to 99/],
    ['storage.reserveByte', { storage: { reserveByte: 5 } }, /unknown key \(did you mean "reserveBytes"\?\)/],
    ['retention.intervalMs', { retention: { intervalMs: 10 } }, /must be an integer from 1000/],
    ['retention.rules', { retention: { rules: {} } }, /must be a list/],
    [
      'retention.rules[0].via',
      { retention: { rules: [{ name: 'a', via: 'ftp', exportedAfterDays: 1 }] } },
      /must be one of stow-rs, wado-rs, c-store, import/,
    ],
    [
      'retention.rules[0].exportedAfterDays',
      { retention: { rules: [{ name: 'a', via: 'stow-rs' }] } },
      /must be a number from 0/,
    ],
    [
      'retention.rules[0].failedAfterDays',
      { retention: { rules: [{ name: 'a', via: 'stow-rs', exportedAfterDays: 1, failedAfterDays: -2 }] } },
      /must be a number from 0/,
    ],
    [
      'retention.rules[0].remoteNodes',
      { retention: { rules: [{ name: 'a', via: 'wado-rs', remoteNodes: ['nowhere'], exportedAfterDays: 1 }] } },
      /unknown remote node "nowhere"/,
    ],
    [
      'retention.rules[0].callingAeTitles',
      { retention: { rules: [{ name: 'a', via: 'stow-rs', callingAeTitles: ['X'], exportedAfterDays: 1 }] } },
      /only used with via c-store/,
    ],
    [
      'retention.rules[0].callingAeTitles',
      {
        retention: {
          rules: [{ name: 'a', via: 'c-store', callingAeTitles: ['THIS_AE_IS_TOO_LONG'], exportedAfterDays: 1 }],
        },
      },
      /is not an AE title/,
    ],
    [
      'retention.rules[0].callingAeTitles',
      { retention: { rules: [{ name: 'a', via: 'c-store', callingAeTitles: ['A\\B'], exportedAfterDays: 1 }] } },
      /is not an AE title/,
    ],
    [
      'retention.rules[0].users',
      { retention: { rules: [{ name: 'a', via: 'stow-rs', users: [], exportedAfterDays: 1 }] } },
      /must list at least one/,
    ],
    [
      'retention.rules[0].afterDays',
      { retention: { rules: [{ name: 'a', via: 'stow-rs', exportedAfterDays: 1, afterDays: 3 }] } },
      /unknown key/,
    ],
    [
      'retention.rules',
      {
        retention: {
          rules: [
            { name: 'a', via: 'stow-rs', exportedAfterDays: 1 },
            { name: 'a', via: 'c-store', exportedAfterDays: 1 },
          ],
        },
      },
      /duplicate name "a"/,
    ],
  ];
  it.each(cases)('%s: a bad value is named by its path', (p, overrides, message) => {
    const problems = problemsOf({ overrides: { remoteNodes: [NODE], ...overrides } as never });
    expect(problems).toHaveLength(1);
    expect(problems[0]?.startsWith(`${p}: `)).toBe(true);
    expect(problems[0]).toMatch(message);
  });

  it('every problem of several bad rules is reported at once', () => {
    const problems = problemsOf({
      overrides: {
        storage: { watermarkPercent: -1 },
        retention: { rules: [{ via: 'mail' }, { name: 'b', via: 'c-store', exportedAfterDays: 'soon' }] },
      } as never,
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^storage\.watermarkPercent: /),
        expect.stringMatching(/^retention\.rules\[0\]\.name: is required/),
        expect.stringMatching(/^retention\.rules\[0\]\.via: /),
        expect.stringMatching(/^retention\.rules\[0\]\.exportedAfterDays: /),
        expect.stringMatching(/^retention\.rules\[1\]\.exportedAfterDays: /),
      ]),
    );
    expect(problems).toHaveLength(5);
  });
});

// [REQ-DSK-01] The watermark and reserve arithmetic, on a measured file system.
describe('DiskGuard limits', () => {
  const fs =
    (freeBytes: number, totalBytes = 1000) =>
    async () => ({ freeBytes, totalBytes });

  it('the larger of reserve and watermark must stay free after the incoming bytes', async () => {
    // 10 % of 1000 = 100 > reserve 50.
    const g = new DiskGuard({ dir: '/', reserveBytes: 50, watermarkPercent: 10, space: fs(300) });
    expect(await g.check(200)).toMatchObject({ ok: true, minFreeBytes: 100, freeBytes: 300, incomingBytes: 200 });
    expect((await g.check(201)).ok).toBe(false);
    // reserve 250 > 10 %.
    const r = new DiskGuard({ dir: '/', reserveBytes: 250, watermarkPercent: 10, space: fs(300) });
    expect((await r.check(50)).ok).toBe(true);
    expect((await r.check(51)).ok).toBe(false);
    await expect(r.require(51)).rejects.toMatchObject({ code: ErrorCode.StorageFull });
    await expect(r.require(51)).rejects.toBeInstanceOf(StorageFullError);
  });

  it('measures a real directory with statfs, and a missing one is out of resources', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'radscribe-guard-'));
    try {
      writeFileSync(path.join(dir, 'x'), 'x');
      const c = await new DiskGuard({ dir, reserveBytes: 0, watermarkPercent: 0 }).check();
      expect(c.ok).toBe(true);
      expect(c.totalBytes).toBeGreaterThan(c.freeBytes);
      expect(c.freeBytes).toBeGreaterThan(0);
      // A reserve larger than the whole file system refuses even 0 bytes.
      expect((await new DiskGuard({ dir, reserveBytes: c.totalBytes + 1, watermarkPercent: 0 }).check()).ok).toBe(
        false,
      );
      await expect(new DiskGuard({ dir: path.join(dir, 'gone') }).check()).rejects.toMatchObject({
        code: ErrorCode.OutOfResources,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses nonsense limits', () => {
    expect(() => new DiskGuard({ dir: '/', watermarkPercent: 100 })).toThrow(/watermark/);
    expect(() => new DiskGuard({ dir: '/', reserveBytes: -1 })).toThrow(/reserve/);
  });
});
