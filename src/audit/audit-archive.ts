import { createHash, type KeyObject, sign, verify } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { LaneHead } from './audit-anchor.js';
import { type AuditChainRow, canonicalAuditEvent, chainHash } from './audit-canonical.js';

/**
 * Archives of dropped audit segments (issue 12 "Retention"). One segment (fromId, toId] becomes
 * three files in the archive directory:
 *   audit-archive-<from>-<to>.ndjson         one row per line, id order: every hashed column raw
 *                                             (AuditChainRow), so each hash can be recomputed;
 *   audit-archive-<from>-<to>.manifest       what is signed, as plain lines (below);
 *   audit-archive-<from>-<to>.manifest.sig   the Ed25519 signature (RFC 8032) of the manifest's
 *                                             bytes, raw 64 bytes.
 * The manifest is signed as it is, so no canonical JSON is needed and anyone can check it without
 * RadScribe: `openssl pkeyutl -verify -pubin -inkey anchor.pub -rawin -in X.manifest -sigfile
 * X.manifest.sig`, then `sha256sum X.ndjson` against its `sha256` line. Per lane it states the
 * first row's prev_hash (what the segment continues) and the last row's hash (what the rows after
 * the segment link to), so the chain stays checkable across the gap. Same key as the anchors.
 */

export const ARCHIVE_FORMAT = 'radscribe-audit-archive/1' as const;
export const ARCHIVE_MANIFEST_RE = /^audit-archive-\d+-\d+\.manifest$/;

/** One lane within a segment. */
export interface ArchiveLane {
  readonly lane: number;
  readonly count: number;
  readonly firstId: number;
  readonly lastId: number;
  /** prev_hash of the lane's first row in the segment: the hash the segment continues from. */
  readonly prevHash: string;
  /** row_hash of the lane's last row in the segment: the base the lane's next row links to. */
  readonly headHash: string;
}

export interface ArchiveManifest {
  readonly format: typeof ARCHIVE_FORMAT;
  readonly createdAt: string;
  /** Exclusive. */
  readonly fromId: number;
  /** Inclusive. */
  readonly toId: number;
  /** The rows file's name (in the manifest's directory). */
  readonly file: string;
  /** SHA-256 of the rows file, hex. */
  readonly sha256: string;
  readonly rows: number;
  readonly lanes: readonly ArchiveLane[];
}

/** The file names of segment (fromId, toId]. */
export function archiveNames(fromId: number, toId: number): { rows: string; manifest: string; signature: string } {
  const base = `audit-archive-${String(fromId).padStart(12, '0')}-${String(toId).padStart(12, '0')}`;
  return { rows: `${base}.ndjson`, manifest: `${base}.manifest`, signature: `${base}.manifest.sig` };
}

/** The manifest text: one field per line, lanes in lane order (what is signed, byte for byte). */
export function manifestText(m: ArchiveManifest): string {
  const lanes = [...m.lanes].sort((a, b) => a.lane - b.lane);
  return `${[
    m.format,
    `created ${m.createdAt}`,
    `segment ${m.fromId} ${m.toId}`,
    `file ${m.file}`,
    `sha256 ${m.sha256}`,
    `rows ${m.rows}`,
    ...lanes.map(
      (l) => `lane ${l.lane} count ${l.count} ids ${l.firstId} ${l.lastId} prev ${l.prevHash} head ${l.headHash}`,
    ),
  ].join('\n')}\n`;
}

const HASH = '[0-9a-f]{64}';
const INT = '(0|[1-9]\\d*)';
const LINE_RES = {
  created: /^created (\S+)$/,
  segment: new RegExp(`^segment ${INT} ${INT}$`),
  file: /^file (audit-archive-\d+-\d+\.ndjson)$/,
  sha256: new RegExp(`^sha256 (${HASH})$`),
  rows: new RegExp(`^rows ${INT}$`),
  lane: new RegExp(`^lane ${INT} count ${INT} ids ${INT} ${INT} prev (${HASH}) head (${HASH})$`),
};

/** Parses a manifest text; undefined when it is not exactly one (then nothing in it is trusted). */
export function parseManifest(text: string): ArchiveManifest | undefined {
  if (!text.endsWith('\n')) return undefined;
  const lines = text.slice(0, -1).split('\n');
  const [format, created, segment, file, sha, rows, ...laneLines] = lines;
  if (format !== ARCHIVE_FORMAT) return undefined;
  const c = LINE_RES.created.exec(created ?? '');
  const s = LINE_RES.segment.exec(segment ?? '');
  const f = LINE_RES.file.exec(file ?? '');
  const h = LINE_RES.sha256.exec(sha ?? '');
  const r = LINE_RES.rows.exec(rows ?? '');
  if (!c || !s || !f || !h || !r) return undefined;
  const lanes: ArchiveLane[] = [];
  for (const line of laneLines) {
    const m = LINE_RES.lane.exec(line);
    if (!m) return undefined;
    lanes.push({
      lane: Number(m[1]),
      count: Number(m[2]),
      firstId: Number(m[3]),
      lastId: Number(m[4]),
      prevHash: m[5] as string,
      headHash: m[6] as string,
    });
  }
  const manifest: ArchiveManifest = {
    format: ARCHIVE_FORMAT,
    createdAt: c[1] as string,
    fromId: Number(s[1]),
    toId: Number(s[2]),
    file: f[1] as string,
    sha256: h[1] as string,
    rows: Number(r[1]),
    lanes,
  };
  // Only the one text form is accepted (lane order, no duplicates): what was signed is what is read.
  return manifestText(manifest) === text ? manifest : undefined;
}

export function signManifest(m: ArchiveManifest, privateKey: KeyObject): Buffer {
  return sign(null, Buffer.from(manifestText(m), 'utf8'), privateKey);
}

/** Closed set of what can be wrong with an archive. */
export const ArchiveProblemKind = {
  /** The manifest is missing, unreadable or not a manifest. */
  ManifestInvalid: 'manifest-invalid',
  /** The signature file is missing or does not verify with the public key. */
  SignatureInvalid: 'signature-invalid',
  /** The rows file is missing, or its SHA-256 is not the manifest's. */
  DigestMismatch: 'digest-mismatch',
  /** A row line that is not a row, out of order, or outside the segment. */
  RowInvalid: 'row-invalid',
  /** A row's hash is not sha256(prev_hash ‖ canonical text): edited. */
  HashMismatch: 'hash-mismatch',
  /** A row does not link to its lane's previous row (or to the lane's prevHash). */
  LinkBroken: 'link-broken',
  /** Counts, ids or hashes per lane differ from the manifest. */
  LaneMismatch: 'lane-mismatch',
} as const;
export type ArchiveProblemKind = (typeof ArchiveProblemKind)[keyof typeof ArchiveProblemKind];

export interface ArchiveProblem {
  readonly kind: ArchiveProblemKind;
  readonly message: string;
  /** 1-based line of the rows file, where one is to blame. */
  readonly line?: number;
}

export interface ArchiveReport {
  readonly ok: boolean;
  readonly manifestFile: string;
  readonly manifest?: ArchiveManifest;
  /** The first problem found (later ones are not looked for: nothing after it is trusted). */
  readonly problem?: ArchiveProblem;
  readonly rowsChecked: number;
  /** Anchor heads looked up in the rows: lane → id → {hash, count within the segment}. */
  readonly heads: ReadonlyMap<string, { readonly headHash: string; readonly countInSegment: number }>;
}

const ROW_KEYS: readonly (keyof AuditChainRow)[] = [
  'id',
  'occurredEpoch',
  'kind',
  'eventId',
  'eventTypeCode',
  'actionCode',
  'outcome',
  'actor',
  'source',
  'destination',
  'patientId',
  'studyInstanceUid',
  'sopInstanceUids',
  'detailText',
  'chainLane',
  'prevHash',
  'rowHash',
];

/** One rows-file line (JSON of the row's fields in a fixed order). */
export function archiveLine(r: AuditChainRow): string {
  const o: Record<string, unknown> = {};
  for (const k of ROW_KEYS) o[k] = r[k];
  return `${JSON.stringify(o)}\n`;
}

function rowOf(line: string): AuditChainRow | undefined {
  let o: unknown;
  try {
    o = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) return undefined;
  const r = o as Record<string, unknown>;
  if (Object.keys(r).length !== ROW_KEYS.length || !ROW_KEYS.every((k) => k in r)) return undefined;
  const strOrNull = (v: unknown) => v === null || typeof v === 'string';
  const ok =
    typeof r.id === 'string' &&
    /^[1-9]\d*$/.test(r.id) &&
    typeof r.occurredEpoch === 'string' &&
    typeof r.kind === 'string' &&
    typeof r.eventId === 'string' &&
    strOrNull(r.eventTypeCode) &&
    typeof r.actionCode === 'string' &&
    Number.isInteger(r.outcome) &&
    strOrNull(r.actor) &&
    strOrNull(r.source) &&
    strOrNull(r.destination) &&
    strOrNull(r.patientId) &&
    strOrNull(r.studyInstanceUid) &&
    (r.sopInstanceUids === null || (Array.isArray(r.sopInstanceUids) && r.sopInstanceUids.every(strOrNull))) &&
    typeof r.detailText === 'string' &&
    Number.isInteger(r.chainLane) &&
    (r.chainLane as number) >= 0 &&
    (r.chainLane as number) < 32 &&
    typeof r.prevHash === 'string' &&
    typeof r.rowHash === 'string';
  return ok ? (r as unknown as AuditChainRow) : undefined;
}

export interface VerifyArchiveOptions {
  /** Anchor heads to look up in the rows (lane and id); their hash and in-segment count are reported. */
  readonly lookup?: readonly LaneHead[];
}

const headKey = (lane: number, id: number): string => `${lane}:${id}`;

/**
 * Verifies one archive from its files alone: the manifest's signature, the rows file's SHA-256,
 * every row's hash recomputed in application code (audit-canonical.ts), the links within each lane
 * starting from the lane's prevHash, ids ascending inside the segment, and the per-lane counts, ids
 * and hashes against the manifest. `manifestFile` may also name the rows file.
 */
export async function verifyArchive(
  manifestFile: string,
  publicKey: KeyObject,
  options: VerifyArchiveOptions = {},
): Promise<ArchiveReport> {
  const file = manifestFile.replace(/\.ndjson$/, '.manifest').replace(/\.manifest\.sig$/, '.manifest');
  const heads = new Map<string, { headHash: string; countInSegment: number }>();
  const fail = (kind: ArchiveProblemKind, message: string, extra: Partial<ArchiveReport> = {}, line?: number) => ({
    ok: false,
    manifestFile: file,
    rowsChecked: 0,
    heads,
    ...extra,
    problem: { kind, message: `${path.basename(file)}: ${message}`, ...(line !== undefined ? { line } : {}) },
  });
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err: unknown) {
    return fail(ArchiveProblemKind.ManifestInvalid, `cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const manifest = parseManifest(bytes.toString('utf8'));
  if (!manifest) return fail(ArchiveProblemKind.ManifestInvalid, `not a ${ARCHIVE_FORMAT} manifest`);
  let signature: Buffer;
  try {
    signature = readFileSync(`${file}.sig`);
  } catch {
    return fail(ArchiveProblemKind.SignatureInvalid, 'signature file missing', { manifest });
  }
  let valid = false;
  try {
    valid = verify(null, bytes, publicKey, signature);
  } catch {
    valid = false;
  }
  if (!valid)
    return fail(ArchiveProblemKind.SignatureInvalid, 'signature does not verify with the public key', { manifest });
  const rowsFile = path.join(path.dirname(file), manifest.file);
  const want = new Set((options.lookup ?? []).map((h) => headKey(h.lane, h.lastId)));
  const lanes = new Map<number, { count: number; firstId: number; lastId: number; prev: string; first: string }>();
  const digest = createHash('sha256');
  let lineNo = 0;
  let lastId = manifest.fromId;
  let problem: ArchiveProblem | undefined;
  try {
    const input = createReadStream(rowsFile);
    input.on('data', (chunk) => digest.update(chunk));
    const rl = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
    for await (const line of rl) {
      lineNo++;
      if (problem) continue; // keep reading for the digest
      const at = `line ${lineNo}`;
      const r = rowOf(line);
      if (!r) {
        problem = { kind: ArchiveProblemKind.RowInvalid, message: `${at}: not an audit row`, line: lineNo };
        continue;
      }
      const id = Number(r.id);
      if (id <= lastId || id > manifest.toId) {
        problem = {
          kind: ArchiveProblemKind.RowInvalid,
          message: `${at}: event ${id} out of order or outside the segment (${manifest.fromId}, ${manifest.toId}]`,
          line: lineNo,
        };
        continue;
      }
      lastId = id;
      const m = manifest.lanes.find((l) => l.lane === r.chainLane);
      let w = lanes.get(r.chainLane);
      const expectedPrev = w ? w.prev : m?.prevHash;
      if (r.prevHash !== expectedPrev) {
        problem = {
          kind: ArchiveProblemKind.LinkBroken,
          message: `${at}: event ${id} (lane ${r.chainLane}): prev_hash does not match ${w ? `event ${w.lastId}'s hash` : "the manifest's prev hash of the lane"}`,
          line: lineNo,
        };
        continue;
      }
      if (chainHash(r.prevHash, canonicalAuditEvent(r)) !== r.rowHash) {
        problem = {
          kind: ArchiveProblemKind.HashMismatch,
          message: `${at}: event ${id} (lane ${r.chainLane}): row_hash does not match its columns (edited)`,
          line: lineNo,
        };
        continue;
      }
      if (!w) {
        w = { count: 0, firstId: id, lastId: id, prev: r.rowHash, first: r.prevHash };
        lanes.set(r.chainLane, w);
      }
      w.count++;
      w.lastId = id;
      w.prev = r.rowHash;
      if (want.has(headKey(r.chainLane, id)))
        heads.set(headKey(r.chainLane, id), { headHash: r.rowHash, countInSegment: w.count });
    }
  } catch (err: unknown) {
    return fail(
      ArchiveProblemKind.DigestMismatch,
      `rows file ${manifest.file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
      { manifest },
    );
  }
  const rowsChecked = lineNo;
  const digestOk = digest.digest('hex') === manifest.sha256;
  // The row to blame first (it says what was changed), then the digest.
  if (problem) {
    const also = digestOk ? '' : "; the rows file's SHA-256 is not the manifest's either";
    return fail(problem.kind, `${problem.message}${also}`, { manifest, rowsChecked }, problem.line);
  }
  if (!digestOk)
    return fail(ArchiveProblemKind.DigestMismatch, `rows file ${manifest.file}: SHA-256 is not the manifest's`, {
      manifest,
      rowsChecked,
    });
  const laneProblem = (msg: string) => fail(ArchiveProblemKind.LaneMismatch, msg, { manifest, rowsChecked });
  if (rowsChecked !== manifest.rows) return laneProblem(`${rowsChecked} rows but the manifest says ${manifest.rows}`);
  if (lanes.size !== manifest.lanes.length)
    return laneProblem(`${lanes.size} lanes but the manifest lists ${manifest.lanes.length}`);
  for (const m of manifest.lanes) {
    const w = lanes.get(m.lane);
    if (!w || w.count !== m.count || w.firstId !== m.firstId || w.lastId !== m.lastId || w.prev !== m.headHash)
      return laneProblem(`lane ${m.lane}: the rows do not match the manifest's count, ids or head hash`);
  }
  return { ok: true, manifestFile: file, manifest, rowsChecked, heads };
}

/** The manifest files of an archive directory, oldest segment first. */
export function manifestFilesIn(names: readonly string[]): string[] {
  return names.filter((n) => ARCHIVE_MANIFEST_RE.test(n)).sort();
}
