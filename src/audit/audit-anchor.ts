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

export const ANCHOR_FORMAT = 'radscribe-audit-anchor/1' as const;
export const ANCHOR_FILE_RE = /^anchor-.*\.json$/;

/** The signed statement: "at `anchoredAt` the chain had `count` rows ending at `lastId` with `headHash`". */
export interface AnchorStatement {
  readonly format: typeof ANCHOR_FORMAT;
  /** 0 and the genesis hash for an empty chain. */
  readonly lastId: number;
  readonly headHash: string;
  readonly count: number;
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

/** The bytes signed: one field per line, fixed order, so no JSON canonicalisation is needed. */
export function signedBytes(s: AnchorStatement): Buffer {
  return Buffer.from([s.format, String(s.lastId), s.headHash, String(s.count), s.anchoredAt].join('\n'), 'utf8');
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
 * The head of the committed chain. Appends are serialised by the chain lock and commit in id
 * order, so every row with id ≤ the head is visible here; the count is taken in the same snapshot.
 * `since` (the previous anchor of this process) lets the count read only the rows after it.
 */
export async function readChainHead(
  q: Queryable,
  since?: { lastId: number; count: number },
): Promise<{ lastId: number; headHash: string; count: number }> {
  const { rows } = await q.query<{ id: string | null; row_hash: string | null; n: string }>(
    `SELECT h.id, h.row_hash, (SELECT count(*) FROM audit_events WHERE id > $1 AND id <= coalesce(h.id, 0)) AS n
     FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT id, row_hash FROM audit_events ORDER BY id DESC LIMIT 1) h ON true`,
    [since?.lastId ?? 0],
  );
  const r = rows[0];
  if (!r || r.id === null || r.row_hash === null) return { lastId: 0, headHash: '0'.repeat(64), count: 0 };
  return { lastId: Number(r.id), headHash: r.row_hash, count: (since?.count ?? 0) + Number(r.n) };
}

/** Writes the anchor atomically (temporary file, then rename) and returns its path. */
export function writeAnchor(directory: string, anchor: AuditAnchor): string {
  const stamp = anchor.anchoredAt.replace(/[-:.]/g, '');
  const file = path.join(directory, `anchor-${stamp}-${String(anchor.lastId).padStart(12, '0')}.json`);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(anchor, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, file);
  return file;
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
  const ok =
    a.format === ANCHOR_FORMAT &&
    Number.isSafeInteger(a.lastId) &&
    typeof a.headHash === 'string' &&
    /^[0-9a-f]{64}$/.test(a.headHash) &&
    Number.isSafeInteger(a.count) &&
    typeof a.anchoredAt === 'string' &&
    typeof a.signature === 'string';
  if (!ok) return undefined;
  return {
    format: ANCHOR_FORMAT,
    lastId: a.lastId as number,
    headHash: a.headHash as string,
    count: a.count as number,
    anchoredAt: a.anchoredAt as string,
    signature: a.signature as string,
  };
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
        anchor: {
          format: ANCHOR_FORMAT,
          lastId: 0,
          headHash: '',
          count: 0,
          anchoredAt: '',
          signature: '',
        },
        signatureValid: false,
      });
      continue;
    }
    out.push({ file, anchor, signatureValid: anchorSignatureValid(anchor, publicKey) });
  }
  return out.sort((a, b) => a.anchor.lastId - b.anchor.lastId || a.file.localeCompare(b.file));
}

export const VERIFIED_HEAD_FORMAT = 'radscribe-audit-verified/1' as const;

/**
 * The head the last successful `audit verify` saw, kept by the verifier (issue 15: "refuse an empty
 * or shortened chain when a previous run … saw more"). It is the verifier's own file, outside the
 * database, so it is held against the chain like an anchor; it is not signed, so it proves nothing
 * to a third party — the signed anchors do that.
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
  if (
    o.format !== VERIFIED_HEAD_FORMAT ||
    !Number.isSafeInteger(o.lastId) ||
    typeof o.headHash !== 'string' ||
    !Number.isSafeInteger(o.count)
  )
    throw new RadScribeError(ErrorCode.ConfigInvalid, `verified-head file ${file}: not a ${VERIFIED_HEAD_FORMAT} file`);
  return {
    file,
    previousRun: true,
    signatureValid: true,
    anchor: {
      format: ANCHOR_FORMAT,
      lastId: o.lastId as number,
      headHash: o.headHash,
      count: o.count as number,
      anchoredAt: String(o.verifiedAt ?? ''),
      signature: '',
    },
  };
}

export function writeVerifiedHead(file: string, head: { lastId: number; headHash: string; count: number }): void {
  mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp`;
  writeFileSync(
    tmp,
    `${JSON.stringify({ format: VERIFIED_HEAD_FORMAT, ...head, verifiedAt: new Date().toISOString() }, null, 2)}\n`,
  );
  renameSync(tmp, file);
}
