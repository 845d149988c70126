import type { Queryable } from '../db/pool.js';
import type { LoadedAnchor } from './audit-anchor.js';
import {
  type AuditChainRow,
  canonicalAuditEvent,
  chainHash,
  chainRowOf,
  GENESIS_HASH,
  type RawChainRow,
  SELECT_AUDIT_CHAIN_RAW,
} from './audit-canonical.js';

/**
 * `radscribe audit verify`: walks the chain in id order recomputing every hash in application code
 * (audit-canonical.ts), and checks it against the signed anchors (audit-anchor.ts). Issue 15 lists
 * what a superuser did that the old verifier passed: a replaced audit_event_canonical(), the last
 * rows deleted, TRUNCATE with the triggers disabled, a forged row. Each is one problem kind here.
 */

export const ChainProblemKind = {
  /** row_hash is not sha256(prev_hash || canonical text): the row was edited (or forged). */
  HashMismatch: 'hash-mismatch',
  /** prev_hash is not the predecessor's row_hash: a row before it was deleted or inserted. */
  LinkBroken: 'link-broken',
  /** An anchor file whose Ed25519 signature does not verify with the configured public key. */
  AnchorSignatureInvalid: 'anchor-signature-invalid',
  /** The row an anchor names has another hash, or another number of rows up to it. */
  AnchorContradicted: 'anchor-contradicted',
  /** The chain has no row with the id an anchor names. */
  AnchoredRowMissing: 'anchored-row-missing',
  /** The chain ends before an anchor's head: rows were deleted from the end, or all (TRUNCATE). */
  ChainShortened: 'chain-shortened',
} as const;
export type ChainProblemKind = (typeof ChainProblemKind)[keyof typeof ChainProblemKind];

export interface ChainProblem {
  readonly kind: ChainProblemKind;
  /** The first event (row id) that does not verify, where one can be named. */
  readonly eventId?: number;
  /** The anchor file it contradicts. */
  readonly anchorFile?: string;
  readonly message: string;
}

export interface AuditChainReport {
  readonly ok: boolean;
  /** Rows read (up to and including the first broken one). */
  readonly checked: number;
  /** The first row whose hash or link does not verify, or that an anchor contradicts. */
  readonly firstBrokenId?: number;
  /** Last id and hash of the chain as read (0 and the genesis hash when empty). */
  readonly headId: number;
  readonly headHash: string;
  /** Signed anchor files read (valid or not). */
  readonly anchorsChecked: number;
  /** Whether the head a previous run recorded was held against the chain too. */
  readonly previousRunChecked: boolean;
  /** Every problem found, in the order found; empty when ok. */
  readonly problems: readonly ChainProblem[];
}

export interface VerifyOptions {
  /** Anchors to hold the chain against (readAnchors); none: a shortened chain cannot be seen. */
  readonly anchors?: readonly LoadedAnchor[];
  readonly pageSize?: number;
}

export const DEFAULT_VERIFY_PAGE = 2000;

/** "anchor FILE", or "previous verification FILE" for the head a former run recorded. */
const named = (a: LoadedAnchor): string => `${a.previousRun ? 'previous verification' : 'anchor'} ${a.file}`;

export async function verifyAuditChain(q: Queryable, options: VerifyOptions = {}): Promise<AuditChainReport> {
  const pageSize = options.pageSize ?? DEFAULT_VERIFY_PAGE;
  const problems: ChainProblem[] = [];
  const all = options.anchors ?? [];
  for (const a of all)
    if (!a.signatureValid)
      problems.push({
        kind: ChainProblemKind.AnchorSignatureInvalid,
        anchorFile: a.file,
        message: `${named(a)}: signature does not verify with the configured public key`,
      });
  // Only signed statements are evidence; an unsigned one could have been written by the attacker.
  const anchors = all
    .filter((a) => a.signatureValid && a.anchor.lastId > 0)
    .sort((a, b) => a.anchor.lastId - b.anchor.lastId);
  let next = 0;
  let prev = GENESIS_HASH;
  let prevId = 0;
  let checked = 0;
  /** The last anchor whose head the chain contains unchanged: rows up to it are proven. */
  let lastGood: LoadedAnchor | undefined;
  let broken: ChainProblem | undefined;

  const coveringAnchor = (id: number): LoadedAnchor | undefined => anchors.find((a) => a.anchor.lastId >= id);
  const contradicts = (id: number): { anchorFile?: string; suffix: string } => {
    const a = coveringAnchor(id);
    return a
      ? { anchorFile: a.file, suffix: `; contradicts ${named(a)} (head event ${a.anchor.lastId})` }
      : { suffix: '' };
  };

  walk: for (let after = 0; ; ) {
    const { rows } = await q.query<RawChainRow>(SELECT_AUDIT_CHAIN_RAW, [after, pageSize]);
    for (const raw of rows) {
      const r: AuditChainRow = chainRowOf(raw);
      const id = Number(r.id);
      checked++;
      // An anchored head the chain went past without containing.
      while (next < anchors.length && (anchors[next] as LoadedAnchor).anchor.lastId < id) {
        const a = anchors[next] as LoadedAnchor;
        broken = {
          kind: ChainProblemKind.AnchoredRowMissing,
          eventId: id,
          anchorFile: a.file,
          message: `event ${a.anchor.lastId} is missing: ${named(a)} signed it as the head (${a.anchor.count} events); the chain goes from event ${prevId} to ${id}`,
        };
        break walk;
      }
      if (r.prevHash !== prev) {
        const c = contradicts(id);
        broken = {
          kind: ChainProblemKind.LinkBroken,
          eventId: id,
          ...(c.anchorFile ? { anchorFile: c.anchorFile } : {}),
          message: `event ${id}: prev_hash does not match event ${prevId}'s hash (a row before it was deleted or inserted)${c.suffix}`,
        };
        break walk;
      }
      const expected = chainHash(r.prevHash, canonicalAuditEvent(r));
      if (r.rowHash !== expected) {
        const c = contradicts(id);
        broken = {
          kind: ChainProblemKind.HashMismatch,
          eventId: id,
          ...(c.anchorFile ? { anchorFile: c.anchorFile } : {}),
          message: `event ${id}: row_hash does not match its columns (edited or forged)${c.suffix}`,
        };
        break walk;
      }
      const a = anchors[next];
      if (a && a.anchor.lastId === id) {
        // Several anchors may name the same head (no events between two intervals).
        while (next < anchors.length && (anchors[next] as LoadedAnchor).anchor.lastId === id) {
          const same = anchors[next] as LoadedAnchor;
          if (same.anchor.headHash !== r.rowHash || same.anchor.count !== checked) {
            const from = lastGood ? `after event ${lastGood.anchor.lastId} (${named(lastGood)})` : 'from the start';
            broken = {
              kind: ChainProblemKind.AnchorContradicted,
              eventId: id,
              anchorFile: same.file,
              message:
                same.anchor.headHash !== r.rowHash
                  ? `event ${id}: hash ${r.rowHash.slice(0, 16)}… but ${named(same)} signed ${same.anchor.headHash.slice(0, 16)}…: the chain was rewritten ${from} up to event ${id}`
                  : `event ${id}: ${checked} events up to it but ${named(same)} signed ${same.anchor.count}`,
            };
            break walk;
          }
          lastGood = same;
          next++;
        }
      }
      prev = r.rowHash;
      prevId = id;
      after = id;
    }
    if (rows.length < pageSize) break;
  }
  if (!broken && next < anchors.length) {
    // The furthest head; a signed anchor rather than the previous run's file when both name it.
    const top = (anchors[anchors.length - 1] as LoadedAnchor).anchor.lastId;
    const furthest = anchors.filter((x) => x.anchor.lastId === top);
    const a = furthest.find((x) => !x.previousRun) ?? (furthest[0] as LoadedAnchor);
    broken = {
      kind: ChainProblemKind.ChainShortened,
      eventId: prevId + 1,
      anchorFile: a.file,
      message: `the chain ends at event ${prevId} (${checked} events) but ${named(a)} saw ${a.anchor.count} events up to event ${a.anchor.lastId}: rows were deleted from the end${checked === 0 ? ' (or the table truncated)' : ''}`,
    };
  }
  if (broken) problems.push(broken);
  const firstBrokenId = broken?.eventId;
  return {
    ok: problems.length === 0,
    checked,
    ...(firstBrokenId !== undefined ? { firstBrokenId } : {}),
    headId: prevId,
    headHash: prev,
    anchorsChecked: all.filter((a) => !a.previousRun).length,
    previousRunChecked: all.some((a) => a.previousRun),
    problems,
  };
}
