import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Queryable } from '../db/pool.js';
import { ErrorCode, RadScribeError } from '../errors.js';

/**
 * Anchors of the audit chain outside the database (issue 12 "Tamper evidence"): the chain head —
 * last id, its row_hash and the number of rows up to it — signed with Ed25519 (RFC 8032, node:crypto)
 * and written as a file. A superuser can rewrite or truncate the table and recompute every hash,
 * but cannot produce a chain that contains a head an anchor signed before the rewrite, nor sign a
 * new anchor without the private key. `radscribe audit verify --anchors <dir>` checks both.
 */

/** How often the gateway anchors the chain head when audit.anchor.directory is set. */
export const DEFAULT_ANCHOR_INTERVAL_SECONDS = 3600;

export const ANCHOR_FORMAT = 'radscribe-audit-anchor/2' as const;
/** Written before migration 0016, when the trail was one chain: a statement about lane 0. Still verified. */
export const ANCHOR_FORMAT_V1 = 'radscribe-audit-anchor/1' as const;
export type AnchorFormat = typeof ANCHOR_FORMAT | typeof ANCHOR_FORMAT_V1;
export const ANCHOR_FILE_RE = /^anchor-.*\.json$/;

/** One lane's head: its last row, that row's hash, and the number of rows of the lane up to it. */
export interface LaneHead {
  readonly lane: number;
  readonly lastId: number;
  readonly headHash: string;
  readonly count: number;
}

/**
 * The signed statement: "at `anchoredAt` each listed lane had `count` rows ending at `lastId` with
 * `headHash`" (migration 0016: the trail is 32 chains). Lanes without rows are not listed.
 */
export interface AnchorStatement {
  readonly format: AnchorFormat;
  readonly lanes: readonly LaneHead[];
  readonly anchoredAt: string;
}

export interface AuditAnchor extends AnchorStatement {
  /** Ed25519 signature of signedBytes(statement), base64. */
  readonly signature: string;
}

/** A file from the anchor directory, with whether its signature verified. */
export interface LoadedAnchor {
  readonly file: string;
  readonly anchor: AuditAnchor;
  readonly signatureValid: boolean;
  /** The head a former `audit verify` recorded (local, unsigned: trusted as the verifier's own file). */
  readonly previousRun?: boolean;
}

/** The highest event id a statement names (0 for an empty trail): its files sort by it. */
export function anchorTopId(s: AnchorStatement): number {
  return s.lanes.reduce((m, l) => Math.max(m, l.lastId), 0);
}

/**
 * The bytes signed: one field per line, fixed order, so no JSON canonicalisation is needed.
 * Format 2: format, time, then one "lane lastId headHash count" line per lane in lane order.
 * Format 1 (one chain): format, lastId, headHash, count, time.
 */
export function signedBytes(s: AnchorStatement): Buffer {
  if (s.format === ANCHOR_FORMAT_V1) {
    const h = s.lanes.find((l) => l.lane === 0) ?? { lastId: 0, headHash: '0'.repeat(64), count: 0 };
    return Buffer.from([s.format, String(h.lastId), h.headHash, String(h.count), s.anchoredAt].join('\n'), 'utf8');
  }
  const lanes = [...s.lanes].sort((a, b) => a.lane - b.lane);
  const lines = lanes.map((l) => `${l.lane} ${l.lastId} ${l.headHash} ${l.count}`);
  return Buffer.from([s.format, s.anchoredAt, ...lines].join('\n'), 'utf8');
}

export function signAnchor(statement: AnchorStatement, privateKey: KeyObject): AuditAnchor {
  // Ed25519 takes no digest algorithm (null): the message is signed as is (RFC 8032 PureEdDSA).
  return { ...statement, signature: sign(null, signedBytes(statement), privateKey).toString('base64') };
}

export function anchorSignatureValid(a: AuditAnchor, publicKey: KeyObject): boolean {
  try {
    return verify(null, signedBytes(a), publicKey, Buffer.from(a.signature, 'base64'));
  } catch {
    return false;
  }
}

function anchorKeyError(file: string, what: string, err: unknown): RadScribeError {
  return new RadScribeError(
    ErrorCode.ConfigInvalid,
    `audit anchor ${what} key ${file}: ${err instanceof Error ? err.message : String(err)}`,
  );
}

function requireEd25519(key: KeyObject, file: string, what: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519')
    throw anchorKeyError(file, what, new Error(`is ${key.asymmetricKeyType ?? 'not asymmetric'}, not ed25519`));
  return key;
}

/** PKCS#8 PEM private key file (as `radscribe audit keygen` writes it). */
export function readPrivateKey(file: string): KeyObject {
  try {
    return requireEd25519(createPrivateKey(readFileSync(file)), file, 'private');
  } catch (err: unknown) {
    if (err instanceof RadScribeError) throw err;
    throw anchorKeyError(file, 'private', err);
  }
}

/** SPKI PEM public key file. */
export function readPublicKey(file: string): KeyObject {
  try {
    return requireEd25519(createPublicKey(readFileSync(file)), file, 'public');
  } catch (err: unknown) {
    if (err instanceof RadScribeError) throw err;
    throw anchorKeyError(file, 'public', err);
  }
}

/** Writes a new Ed25519 key pair; the private key file is readable by its owner only. */
export function generateAnchorKeys(privateKeyFile: string, publicKeyFile: string): void {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  // flag 'wx': never overwrite an existing key (that would orphan every anchor signed with it).
  writeFileSync(privateKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  writeFileSync(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644, flag: 'wx' });
}

/**
 * The head of every lane of the committed trail. A lane's appends are serialised by its lock and
 * take their id under it, so every row of a lane with id ≤ that lane's head is visible here (an
 * append in flight has a higher id); the counts are taken in the same snapshot. `since` (the
 * previous anchor of this process) lets each count read only the lane's rows after it.
 */
export async function readChainHead(q: Queryable, since?: readonly LaneHead[]): Promise<LaneHead[]> {
  const prev = new Map((since ?? []).map((l) => [l.lane, l]));
  // Audit retention (migration 0021) drops old segments; a lane's count still counts every row since
  // its first (audit_lane_base.dropped + the rows left). The count goes on from the previous anchor
  // only when that anchor's head is above the last dropped segment (nothing it counted has gone).
  const { rows } = await q.query<{
    lane: number;
    id: string;
    row_hash: string;
    n: string;
    dropped: string;
    incremental: boolean;
  }>(
    `WITH f AS (SELECT coalesce(max(upto_id), 0) AS frontier FROM audit_lane_base),
          s AS (SELECT l.lane, coalesce(($1::jsonb ->> l.lane::text)::bigint, 0) AS since_id
                FROM generate_series(0, 31) AS l(lane))
     SELECT s.lane, h.id, h.row_hash, coalesce(b.dropped, 0) AS dropped, s.since_id > f.frontier AS incremental,
            (SELECT count(*) FROM audit_events c
             WHERE c.chain_lane = s.lane AND c.id > (CASE WHEN s.since_id > f.frontier THEN s.since_id ELSE 0 END)
               AND c.id <= h.id) AS n
     FROM s CROSS JOIN f
     CROSS JOIN LATERAL (SELECT a.id, a.row_hash FROM audit_events a WHERE a.chain_lane = s.lane ORDER BY a.id DESC LIMIT 1) h
     LEFT JOIN audit_lane_base b ON b.lane = s.lane
     ORDER BY s.lane`,
    [JSON.stringify(Object.fromEntries([...prev].map(([lane, l]) => [String(lane), l.lastId])))],
  );
  return rows.map((r) => ({
    lane: Number(r.lane),
    lastId: Number(r.id),
    headHash: r.row_hash,
    count: (r.incremental ? (prev.get(Number(r.lane))?.count ?? 0) : Number(r.dropped)) + Number(r.n),
  }));
}

/** Writes the anchor atomically (temporary file, then rename) and returns its path. */
export function writeAnchor(directory: string, anchor: AuditAnchor): string {
  const stamp = anchor.anchoredAt.replace(/[-:.]/g, '');
  const file = path.join(directory, `anchor-${stamp}-${String(anchorTopId(anchor)).padStart(12, '0')}.json`);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(anchor, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, file);
  return file;
}

const HASH_RE = /^[0-9a-f]{64}$/;

function laneHeadOf(o: unknown): LaneHead | undefined {
  if (typeof o !== 'object' || o === null) return undefined;
  const l = o as Record<string, unknown>;
  const ok =
    Number.isSafeInteger(l.lane) &&
    (l.lane as number) >= 0 &&
    (l.lane as number) < 32 &&
    Number.isSafeInteger(l.lastId) &&
    typeof l.headHash === 'string' &&
    HASH_RE.test(l.headHash) &&
    Number.isSafeInteger(l.count);
  return ok
    ? { lane: l.lane as number, lastId: l.lastId as number, headHash: l.headHash as string, count: l.count as number }
    : undefined;
}

/** The lanes of a statement file: format 2's list, or format 1's single chain as lane 0. */
function lanesOf(a: Record<string, unknown>): LaneHead[] | undefined {
  if (a.format === ANCHOR_FORMAT_V1 || a.format === VERIFIED_HEAD_FORMAT_V1) {
    const head = laneHeadOf({ ...a, lane: 0 });
    if (!head) return undefined;
    return head.lastId > 0 ? [head] : [];
  }
  if (!Array.isArray(a.lanes)) return undefined;
  const lanes = a.lanes.map(laneHeadOf);
  if (lanes.some((l) => l === undefined)) return undefined;
  const list = lanes as LaneHead[];
  return new Set(list.map((l) => l.lane)).size === list.length ? list : undefined;
}

function parseAnchor(text: string): AuditAnchor | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof o !== 'object' || o === null) return undefined;
  const a = o as Record<string, unknown>;
  if (a.format !== ANCHOR_FORMAT && a.format !== ANCHOR_FORMAT_V1) return undefined;
  const lanes = lanesOf(a);
  if (!lanes || typeof a.anchoredAt !== 'string' || typeof a.signature !== 'string') return undefined;
  return { format: a.format, lanes, anchoredAt: a.anchoredAt, signature: a.signature };
}

/**
 * Every anchor file in `directory`, oldest head first, each with its signature checked. A file that
 * is not an anchor at all is reported as one whose signature does not verify (it cannot be trusted,
 * and a verifier must not skip it silently).
 */
export function readAnchors(directory: string, publicKey: KeyObject): LoadedAnchor[] {
  let names: string[];
  try {
    names = readdirSync(directory).filter((f) => ANCHOR_FILE_RE.test(f));
  } catch (err: unknown) {
    throw new RadScribeError(
      ErrorCode.ConfigInvalid,
      `audit anchor directory ${directory}: ${(err as NodeJS.ErrnoException).code ?? 'cannot read'}`,
    );
  }
  const out: LoadedAnchor[] = [];
  for (const name of names.sort()) {
    const file = path.join(directory, name);
    const anchor = parseAnchor(readFileSync(file, 'utf8'));
    if (!anchor) {
      out.push({
        file,
        anchor: { format: ANCHOR_FORMAT, lanes: [], anchoredAt: '', signature: '' },
        signatureValid: false,
      });
      continue;
    }
    out.push({ file, anchor, signatureValid: anchorSignatureValid(anchor, publicKey) });
  }
  return out.sort((a, b) => anchorTopId(a.anchor) - anchorTopId(b.anchor) || a.file.localeCompare(b.file));
}

export const VERIFIED_HEAD_FORMAT = 'radscribe-audit-verified/2' as const;
/** Written before migration 0016 (one chain): read as lane 0. */
export const VERIFIED_HEAD_FORMAT_V1 = 'radscribe-audit-verified/1' as const;

/**
 * The lane heads the last successful `audit verify` saw, kept by the verifier (issue 15: "refuse an
 * empty or shortened chain when a previous run … saw more"). It is the verifier's own file, outside
 * the database, so it is held against the chain like an anchor; it is not signed, so it proves
 * nothing to a third party — the signed anchors do that.
 */
export function readVerifiedHead(file: string): LoadedAnchor | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err: unknown) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const o = JSON.parse(text) as Record<string, unknown>;
  const lanes = o.format === VERIFIED_HEAD_FORMAT || o.format === VERIFIED_HEAD_FORMAT_V1 ? lanesOf(o) : undefined;
  if (!lanes)
    throw new RadScribeError(ErrorCode.ConfigInvalid, `verified-head file ${file}: not a ${VERIFIED_HEAD_FORMAT} file`);
  return {
    file,
    previousRun: true,
    signatureValid: true,
    anchor: { format: ANCHOR_FORMAT, lanes, anchoredAt: String(o.verifiedAt ?? ''), signature: '' },
  };
}

export function writeVerifiedHead(file: string, lanes: readonly LaneHead[]): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(
    tmp,
    `${JSON.stringify({ format: VERIFIED_HEAD_FORMAT, lanes, verifiedAt: new Date().toISOString() }, null, 2)}\n`,
  );
  renameSync(tmp, file);
}
