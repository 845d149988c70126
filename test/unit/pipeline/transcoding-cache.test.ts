import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { RemoteInstanceRef } from '../../../src/pipeline/transcode-fallback.js';
import { TranscodingCache } from '../../../src/pipeline/transcoding-cache.js';

/** The PACS side is a function of the node and the instance (the real one is WADO-RS). */
function fakePacs(sizeOf: (sop: string) => number) {
  const calls: { node: string; ref: RemoteInstanceRef }[] = [];
  return {
    calls,
    fetch: async (node: string, ref: RemoteInstanceRef) => {
      calls.push({ node, ref });
      return node === 'pacs' ? new Uint8Array(sizeOf(ref.sopInstanceUid)).fill(7) : undefined;
    },
  };
}
const inst = (sop: string, via = 'wado-rs', actor: string | null = 'pacs') => ({
  sopInstanceUid: sop,
  seriesInstanceUid: '1.2.3',
  receivedVia: via,
  actor,
});
const study = { studyInstanceUid: '1.2' };

describe('TranscodingCache', () => {
  let dir: string;
  beforeEach(() => {
    dir = path.join(mkdtempSync(path.join(tmpdir(), 'rs-tc-')), 'transcoded');
  });
  afterEach(() => rmSync(path.dirname(dir), { recursive: true, force: true }));

  it('fetches once per instance and serves the file afterwards', async () => {
    const pacs = fakePacs(() => 100);
    const cache = new TranscodingCache({ dir, fetch: pacs.fetch });
    const f = await cache.transcode(inst('1.1'), study);
    expect(f).toBe(path.join(dir, '1.1.dcm'));
    expect(existsSync(f as string)).toBe(true);
    expect(await cache.transcode(inst('1.1'), study)).toBe(f);
    expect(pacs.calls).toEqual([
      { node: 'pacs', ref: { studyInstanceUid: '1.2', seriesInstanceUid: '1.2.3', sopInstanceUid: '1.1' } },
    ]);
  });

  it('has no source for instances not retrieved by WADO-RS from a configured node', async () => {
    const pacs = fakePacs(() => 100);
    const cache = new TranscodingCache({ dir, fetch: pacs.fetch });
    expect(await cache.transcode(inst('1.1', 'stow-rs'), study)).toBeUndefined();
    expect(await cache.transcode(inst('1.1', 'wado-rs', null), study)).toBeUndefined();
    expect(await cache.transcode(inst('1.1', 'wado-rs', 'gone'), study)).toBeUndefined();
    expect(pacs.calls.map((c) => c.node)).toEqual(['gone']);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('stays within its byte bound, evicting the least recently used copy', async () => {
    const pacs = fakePacs(() => 400);
    const cache = new TranscodingCache({ dir, fetch: pacs.fetch, maxBytes: 1000 });
    await cache.transcode(inst('1.1'), study);
    await cache.transcode(inst('1.2'), study);
    await cache.transcode(inst('1.1'), study); // 1.1 is now the most recent
    await cache.transcode(inst('1.3'), study); // 1200 bytes > 1000: 1.2 goes
    expect(cache.size).toEqual({ entries: 2, bytes: 800 });
    expect(readdirSync(dir).sort()).toEqual(['1.1.dcm', '1.3.dcm']);
    await cache.transcode(inst('1.2'), study);
    expect(pacs.calls.map((c) => c.ref.sopInstanceUid)).toEqual(['1.1', '1.2', '1.3', '1.2']);
    expect(readdirSync(dir).sort()).toEqual(['1.2.dcm', '1.3.dcm']);
  });

  it('stays within its entry bound', async () => {
    const cache = new TranscodingCache({ dir, fetch: fakePacs(() => 10).fetch, maxEntries: 2 });
    for (const sop of ['1.1', '1.2', '1.3', '1.4']) await cache.transcode(inst(sop), study);
    expect(readdirSync(dir).sort()).toEqual(['1.3.dcm', '1.4.dcm']);
  });

  it('counts copies left by an earlier run against the bound, oldest first', async () => {
    const { mkdirSync, utimesSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    for (const [i, sop] of ['9.1', '9.2', '9.3'].entries()) {
      const f = path.join(dir, `${sop}.dcm`);
      writeFileSync(f, new Uint8Array(300));
      utimesSync(f, 1_000 + i, 1_000 + i);
    }
    const cache = new TranscodingCache({ dir, fetch: fakePacs(() => 300).fetch, maxBytes: 700 });
    expect(readdirSync(dir).sort()).toEqual(['9.2.dcm', '9.3.dcm']);
    expect(cache.size).toEqual({ entries: 2, bytes: 600 });
  });
});
