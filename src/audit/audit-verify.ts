import type { Queryable } from '../db/pool.js';
import type { LaneHead, LoadedAnchor } from './audit-anchor.js';
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
  /** The highest event id read (0 when empty). */
  readonly headId: number;
  /** Each lane's head as read, by lane (migration 0016); empty for an empty trail. */
  readonly heads: readonly LaneHead[];
  /** Signed anchor files read (valid or not). */
  readonly anchorsChecked: number;
  /** Whether the heads a previous run recorded were held against the chain too. */
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

/** "anchor FILE", or "previous verification FILE" for the heads a former run recorded. */
const named = (a: LoadedAnchor): string => `${a.previousRun ? 'previous verification' : 'anchor'} ${a.file}`;

/** One lane head an anchor file states, with the file it came from. */
interface LaneClaim {
  readonly from: LoadedAnchor;
  readonly head: LaneHead;
}

/** What the walk knows of one lane: its claims still ahead, the last row and hash read, rows read. */
interface LaneWalk {
  readonly claims: LaneClaim[];
  next: number;
  prevHash: string;
  prevId: number;
  count: number;
  /** The last claim whose head the lane contains unchanged: its rows up to it are proven. */
  lastGood?: LaneClaim;
}

/**
 * Walks the trail in id order. Each row belongs to one lane (migration 0016), and within a lane id
 * order is chain order, so every lane is checked as its own chain — links, hashes and the heads
 * the anchors signed for it — in one pass over the table.
 */
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
  const lanes = new Map<number, LaneWalk>();
  const laneOf = (lane: number): LaneWalk => {
    let w = lanes.get(lane);
    if (!w) {
      w = { claims: [], next: 0, prevHash: GENESIS_HASH, prevId: 0, count: 0 };
      lanes.set(lane, w);
    }
    return w;
  };
  for (const a of all)
    if (a.signatureValid)
      for (const head of a.anchor.lanes) if (head.lastId > 0) laneOf(head.lane).claims.push({ from: a, head });
  for (const w of lanes.values()) w.claims.sort((x, y) => x.head.lastId - y.head.lastId);

  let checked = 0;
  let headId = 0;
  let broken: ChainProblem | undefined;
  const lanePrefix = (lane: number): string => (lane === 0 ? '' : ` (lane ${lane})`);
  const contradicts = (w: LaneWalk, id: number): { anchorFile?: string; suffix: string } => {
    const c = w.claims.find((x) => x.head.lastId >= id);
    return c
      ? { anchorFile: c.from.file, suffix: `; contradicts ${named(c.from)} (head event ${c.head.lastId})` }
      : { suffix: '' };
  };

  walk: for (let after = 0; ; ) {
    const { rows } = await q.query<RawChainRow>(SELECT_AUDIT_CHAIN_RAW, [after, pageSize]);
    for (const raw of rows) {
      const r: AuditChainRow = chainRowOf(raw);
      const id = Number(r.id);
      const w = laneOf(r.chainLane);
      const lane = lanePrefix(r.chainLane);
      checked++;
      // An anchored head the lane went past without containing.
      while (w.next < w.claims.length && (w.claims[w.next] as LaneClaim).head.lastId < id) {
        const c = w.claims[w.next] as LaneClaim;
        broken = {
          kind: ChainProblemKind.AnchoredRowMissing,
          eventId: id,
          anchorFile: c.from.file,
          message: `event ${c.head.lastId}${lane} is missing: ${named(c.from)} signed it as the head (${c.head.count} events); the chain goes from event ${w.prevId} to ${id}`,
        };
        break walk;
      }
      if (r.prevHash !== w.prevHash) {
        const c = contradicts(w, id);
        broken = {
          kind: ChainProblemKind.LinkBroken,
          eventId: id,
          ...(c.anchorFile ? { anchorFile: c.anchorFile } : {}),
          message: `event ${id}${lane}: prev_hash does not match event ${w.prevId}'s hash (a row before it was deleted or inserted)${c.suffix}`,
        };
        break walk;
      }
      const expected = chainHash(r.prevHash, canonicalAuditEvent(r));
      if (r.rowHash !== expected) {
        const c = contradicts(w, id);
        broken = {
          kind: ChainProblemKind.HashMismatch,
          eventId: id,
          ...(c.anchorFile ? { anchorFile: c.anchorFile } : {}),
          message: `event ${id}${lane}: row_hash does not match its columns (edited or forged)${c.suffix}`,
        };
        break walk;
      }
      w.count++;
      // Several anchors may name the same head (no events between two intervals).
      while (w.next < w.claims.length && (w.claims[w.next] as LaneClaim).head.lastId === id) {
        const same = w.claims[w.next] as LaneClaim;
        if (same.head.headHash !== r.rowHash || same.head.count !== w.count) {
          const from = w.lastGood
            ? `after event ${w.lastGood.head.lastId} (${named(w.lastGood.from)})`
            : 'from the start';
          broken = {
            kind: ChainProblemKind.AnchorContradicted,
            eventId: id,
            anchorFile: same.from.file,
            message:
              same.head.headHash !== r.rowHash
                ? `event ${id}${lane}: hash ${r.rowHash.slice(0, 16)}… but ${named(same.from)} signed ${same.head.headHash.slice(0, 16)}…: the chain was rewritten ${from} up to event ${id}`
                : `event ${id}${lane}: ${w.count} events up to it but ${named(same.from)} signed ${same.head.count}`,
          };
          break walk;
        }
        w.lastGood = same;
        w.next++;
      }
      w.prevHash = r.rowHash;
      w.prevId = id;
      headId = id;
      after = id;
    }
    if (rows.length < pageSize) break;
  }
  if (!broken) {
    for (const [laneNo, w] of [...lanes].sort((x, y) => x[0] - y[0])) {
      if (w.next >= w.claims.length) continue;
      // The furthest head; a signed anchor rather than the previous run's file when both name it.
      const top = (w.claims[w.claims.length - 1] as LaneClaim).head.lastId;
      const furthest = w.claims.filter((x) => x.head.lastId === top);
      const c = furthest.find((x) => !x.from.previousRun) ?? (furthest[0] as LaneClaim);
      const lane = lanePrefix(laneNo);
      broken = {
        kind: ChainProblemKind.ChainShortened,
        eventId: w.prevId + 1,
        anchorFile: c.from.file,
        message: `the chain${lane} ends at event ${w.prevId} (${w.count} events) but ${named(c.from)} saw ${c.head.count} events up to event ${c.head.lastId}: rows were deleted from the end${checked === 0 ? ' (or the table truncated)' : ''}`,
      };
      break;
    }
  }
  if (broken) problems.push(broken);
  const firstBrokenId = broken?.eventId;
  const heads: LaneHead[] = [...lanes]
    .filter(([, w]) => w.count > 0)
    .sort((x, y) => x[0] - y[0])
    .map(([lane, w]) => ({ lane, lastId: w.prevId, headHash: w.prevHash, count: w.count }));
  return {
    ok: problems.length === 0,
    checked,
    ...(firstBrokenId !== undefined ? { firstBrokenId } : {}),
    headId,
    heads,
    anchorsChecked: all.filter((a) => !a.previousRun).length,
    previousRunChecked: all.some((a) => a.previousRun),
    problems,
  };
}
