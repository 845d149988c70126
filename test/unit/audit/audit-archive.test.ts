import { createHash, generateKeyPairSync, verify } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  ARCHIVE_FORMAT,
  type ArchiveManifest,
  ArchiveProblemKind,
  archiveLine,
  archiveNames,
  manifestText,
  parseManifest,
  signManifest,
  verifyArchive,
} from '../../../src/audit/audit-archive.js';
import {
  type AuditChainRow,
  canonicalAuditEvent,
  chainHash,
  GENESIS_HASH,
} from '../../../src/audit/audit-canonical.js';

const keys = generateKeyPairSync('ed25519');
const H = (c: string) => c.repeat(64);

const MANIFEST: ArchiveManifest = {
  format: ARCHIVE_FORMAT,
  createdAt: '2026-12-04T15:00:00.000Z',
  fromId: 100,
  toId: 200,
  file: 'audit-archive-000000000100-000000000200.ndjson',
  sha256: H('a'),
  rows: 3,
  lanes: [
    { lane: 7, count: 1, firstId: 150, lastId: 150, prevHash: H('b'), headHash: H('c') },
    { lane: 0, count: 2, firstId: 101, lastId: 199, prevHash: H('d'), headHash: H('e') },
  ],
};

describe('archive manifest', () => {
  it('is plain lines, lanes in lane order, and parses back to itself', () => {
    const text = manifestText(MANIFEST);
    expect(text).toBe(
      [
        'radscribe-audit-archive/1',
        'created 2026-12-04T15:00:00.000Z',
        'segment 100 200',
        'file audit-archive-000000000100-000000000200.ndjson',
        `sha256 ${H('a')}`,
        'rows 3',
        `lane 0 count 2 ids 101 199 prev ${H('d')} head ${H('e')}`,
        `lane 7 count 1 ids 150 150 prev ${H('b')} head ${H('c')}`,
        '',
      ].join('\n'),
    );
    expect(parseManifest(text)).toEqual({ ...MANIFEST, lanes: [...MANIFEST.lanes].reverse() });
  });

  it('accepts only its one text form', () => {
    const text = manifestText(MANIFEST);
    const lines = text.split('\n');
    for (const bad of [
      text.slice(0, -1), // no final newline
      text.replace('radscribe-audit-archive/1', 'radscribe-audit-archive/2'),
      text.replace('rows 3', 'rows 03'),
      text.replace('segment 100 200', 'segment 100  200'),
      text.replace(`sha256 ${H('a')}`, `sha256 ${H('A')}`),
      [lines[0], lines[1], lines[2], lines[3], lines[4], lines[5], lines[7], lines[6], ''].join('\n'), // lane order
      `${text}lane 0 count 2 ids 101 199 prev ${H('d')} head ${H('e')}\n`, // duplicate lane
      text.replace('file audit-archive-000000000100-000000000200.ndjson', 'file ../../etc/passwd'),
    ])
      expect(parseManifest(bad)).toBeUndefined();
  });

  it('is signed as it is (Ed25519 over the manifest bytes)', () => {
    const sig = signManifest(MANIFEST, keys.privateKey);
    expect(sig).toHaveLength(64);
    expect(verify(null, Buffer.from(manifestText(MANIFEST)), keys.publicKey, sig)).toBe(true);
    expect(verify(null, Buffer.from(manifestText({ ...MANIFEST, rows: 4 })), keys.publicKey, sig)).toBe(false);
  });

  it('names the files of a segment', () => {
    expect(archiveNames(0, 100_000)).toEqual({
      rows: 'audit-archive-000000000000-000000100000.ndjson',
      manifest: 'audit-archive-000000000000-000000100000.manifest',
      signature: 'audit-archive-000000000000-000000100000.manifest.sig',
    });
  });
});

/** A real little chain of two lanes, hashed as the trigger hashes. */
function chain(): AuditChainRow[] {
  const rows: AuditChainRow[] = [];
  const prev = new Map<number, string>();
  for (let id = 1; id <= 6; id++) {
    const lane = id % 2 === 0 ? 3 : 0;
    const base: Omit<AuditChainRow, 'rowHash'> = {
      id: String(id),
      occurredEpoch: `${1_790_000_000 + id}.123456`,
      kind: 'instance-received',
      eventId: '110104',
      eventTypeCode: null,
      actionCode: 'C',
      outcome: 0,
      actor: 'STORE"SCU',
      source: '10.0.0.7',
      destination: null,
      patientId: id === 2 ? 'PAT-1' : null,
      studyInstanceUid: '1.2.3',
      sopInstanceUids: [`1.2.3.${id}`],
      detailText: `{"n": ${id}, "via": "dimse"}`,
      chainLane: lane,
      prevHash: prev.get(lane) ?? GENESIS_HASH,
    };
    const rowHash = chainHash(base.prevHash, canonicalAuditEvent({ ...base, rowHash: '' }));
    prev.set(lane, rowHash);
    rows.push({ ...base, rowHash });
  }
  return rows;
}

describe('verifyArchive', () => {
  let dir: string;
  let manifestFile: string;
  let rowsFile: string;
  const rows = chain();

  function write(lines: string[], manifestOver: Partial<ArchiveManifest> = {}): void {
    const names = archiveNames(0, 10);
    rowsFile = path.join(dir, names.rows);
    manifestFile = path.join(dir, names.manifest);
    const body = lines.join('');
    writeFileSync(rowsFile, body);
    const lane = (l: number) => rows.filter((r) => r.chainLane === l);
    const m: ArchiveManifest = {
      format: ARCHIVE_FORMAT,
      createdAt: '2026-12-04T15:00:00.000Z',
      fromId: 0,
      toId: 10,
      file: names.rows,
      sha256: createHash('sha256').update(body).digest('hex'),
      rows: rows.length,
      lanes: [0, 3].map((l) => ({
        lane: l,
        count: lane(l).length,
        firstId: Number(lane(l)[0]?.id),
        lastId: Number(lane(l).at(-1)?.id),
        prevHash: GENESIS_HASH,
        headHash: lane(l).at(-1)?.rowHash as string,
      })),
      ...manifestOver,
    };
    writeFileSync(manifestFile, manifestText(m));
    writeFileSync(`${manifestFile}.sig`, signManifest(m, keys.privateKey));
  }

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'radscribe-archive-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('passes an intact archive and finds the heads asked for', async () => {
    write(rows.map(archiveLine));
    const r = await verifyArchive(manifestFile, keys.publicKey, {
      lookup: [{ lane: 3, lastId: 4, headHash: '', count: 0 }],
    });
    expect(r).toMatchObject({ ok: true, rowsChecked: 6 });
    expect(r.heads.get('3:4')).toEqual({ headHash: rows[3]?.rowHash, countInSegment: 2 });
    // The rows file or the signature file may be named instead of the manifest.
    expect((await verifyArchive(rowsFile, keys.publicKey)).ok).toBe(true);
  });

  it('names an edited row by its line', async () => {
    const lines = rows.map(archiveLine);
    lines[2] = (lines[2] as string).replace('10.0.0.7', '10.0.0.8');
    write(lines);
    // The digest was computed over the edited file: only the row hash tells.
    const r = await verifyArchive(manifestFile, keys.publicKey);
    expect(r.problem).toMatchObject({ kind: ArchiveProblemKind.HashMismatch, line: 3 });
    expect(r.problem?.message).toContain('line 3: event 3 (lane 0): row_hash does not match its columns (edited)');
  });

  it('names a removed row as a broken link, and a row out of the segment', async () => {
    write(rows.filter((r) => r.id !== '3').map(archiveLine), { rows: 5 });
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem).toMatchObject({
      kind: ArchiveProblemKind.LinkBroken,
      // Event 5 (line 4) follows event 1 in lane 0.
      line: 4,
    });
    write(rows.map(archiveLine), { toId: 5 });
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem).toMatchObject({
      kind: ArchiveProblemKind.RowInvalid,
      line: 6,
    });
  });

  it('catches a rows file changed after signing, a wrong key, a missing signature, lane counts', async () => {
    write(rows.map(archiveLine));
    writeFileSync(rowsFile, `${readFileSync(rowsFile, 'utf8')}\n`);
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem?.kind).toBe(ArchiveProblemKind.RowInvalid);
    write(rows.map(archiveLine));
    writeFileSync(rowsFile, readFileSync(rowsFile, 'utf8').replace('"outcome":0', '"outcome":0 '));
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem?.kind).toBe(ArchiveProblemKind.DigestMismatch);

    write(rows.map(archiveLine));
    const other = generateKeyPairSync('ed25519');
    expect((await verifyArchive(manifestFile, other.publicKey)).problem?.kind).toBe(
      ArchiveProblemKind.SignatureInvalid,
    );
    unlinkSync(`${manifestFile}.sig`);
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem?.kind).toBe(ArchiveProblemKind.SignatureInvalid);

    write(rows.map(archiveLine), { rows: 7 });
    expect((await verifyArchive(manifestFile, keys.publicKey)).problem).toMatchObject({
      kind: ArchiveProblemKind.LaneMismatch,
      message: expect.stringContaining('6 rows but the manifest says 7'),
    });
    expect((await verifyArchive(path.join(dir, 'nope.manifest'), keys.publicKey)).problem?.kind).toBe(
      ArchiveProblemKind.ManifestInvalid,
    );
  });
});
