import { createHash, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Queryable } from '../db/pool.js';
import type { LaneHead, LoadedAnchor } from './audit-anchor.js';
import { verifyArchive } from './audit-archive.js';
import {
  type AuditChainRow,
  canonicalAuditEvent,
  chainHash,
  chainRowOf,
  GENESIS_HASH,
  type RawChainRow,
  SELECT_AUDIT_CHAIN_RAW,
} from './audit-canonical.js';
import { type LaneBase, type RetentionCheckpoint, readRetentionCheckpoints } from './audit-retention.js';

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
  /**
   * A retention checkpoint (migration 0021) that is not one, does not continue the one before it,
   * or an event still present inside a segment a checkpoint says was dropped.
   */
  CheckpointInvalid: 'checkpoint-invalid',
  /** With --archives: a dropped segment's archive is missing, does not verify, or is not the one its checkpoint names. */
  ArchiveInvalid: 'archive-invalid',
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
  /** Retention checkpoints read (migration 0021), and the last id they dropped (0: none). */
  readonly checkpoints: number;
  readonly droppedThrough: number;
  /** Archives of dropped segments verified (--archives). */
  readonly archivesChecked: number;
  /** What was not checked and why (anchor heads in dropped segments without --archives). */
  readonly notes: readonly string[];
}

export interface VerifyOptions {
  /** Anchors to hold the chain against (readAnchors); none: a shortened chain cannot be seen. */
  readonly anchors?: readonly LoadedAnchor[];
  readonly pageSize?: number;
  /**
   * The archives of dropped segments (audit verify --archives DIR): each checkpoint's archive is
   * verified and the anchor heads inside it are checked against its rows. Without: those heads are
   * checked against the checkpoint only and noted as covered by the archive.
   */
  readonly archives?: { readonly directory: string; readonly publicKey: KeyObject };
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

/** The checkpoints as verified before the walk: each with what had been dropped of each lane before it. */
interface CheckedCheckpoint {
  readonly c: RetentionCheckpoint;
  readonly droppedBefore: ReadonlyMap<number, number>;
}

const SELECT_CHECKPOINTS_RAW = SELECT_AUDIT_CHAIN_RAW.replace(
  'WHERE a.id > $1 ORDER BY a.id LIMIT $2',
  "WHERE a.kind = 'audit-retention' AND a.id > $1 ORDER BY a.id LIMIT $2",
);
if (SELECT_CHECKPOINTS_RAW === SELECT_AUDIT_CHAIN_RAW)
  throw new Error('SELECT_AUDIT_CHAIN_RAW changed: update audit-verify.ts');

/**
 * The retention checkpoints (migration 0021), checked before the walk because the walk starts each
 * lane from them: each checkpoint event's own hash, each one's segment continuing the one before it
 * (from the start, 0), each lane's prevHash the previous checkpoint's head of the lane (or the
 * lane's genesis). The walk then checks the checkpoint events' links like every other row.
 */
async function checkCheckpoints(
  q: Queryable,
  notes: string[],
): Promise<{
  checked: CheckedCheckpoint[];
  bases: Map<number, LaneBase & { eventId: number }>;
  problem?: ChainProblem;
}> {
  const bases = new Map<number, LaneBase & { eventId: number }>();
  const checked: CheckedCheckpoint[] = [];
  const { rows } = await q.query<RawChainRow>(SELECT_CHECKPOINTS_RAW, [0, 1_000_000]);
  for (const raw of rows) {
    const r = chainRowOf(raw);
    if (chainHash(r.prevHash, canonicalAuditEvent(r)) !== r.rowHash)
      return {
        checked,
        bases,
        problem: {
          kind: ChainProblemKind.HashMismatch,
          eventId: Number(r.id),
          message: `event ${r.id}: retention checkpoint's row_hash does not match its columns (edited or forged)`,
        },
      };
  }
  const { checkpoints, unreadable } = await readRetentionCheckpoints(q);
  for (const id of unreadable)
    notes.push(
      `event ${id} is an audit-retention event without a retention checkpoint in its detail: it claims nothing, ignored`,
    );
  const bad = (eventId: number, why: string) => ({
    checked,
    bases,
    problem: {
      kind: ChainProblemKind.CheckpointInvalid,
      eventId,
      message: `retention checkpoint event ${eventId}: ${why}`,
    },
  });
  let frontier = 0;
  for (const c of checkpoints) {
    if (c.fromId !== frontier)
      return bad(
        c.eventId,
        `segment (${c.fromId}, ${c.toId}] does not start where the previous one ended (${frontier})`,
      );
    if (c.toId <= c.fromId || c.eventId <= c.toId)
      return bad(c.eventId, `segment (${c.fromId}, ${c.toId}] is not a segment before it`);
    const droppedBefore = new Map([...bases].map(([lane, b]) => [lane, b.dropped]));
    let rows = 0;
    for (const l of c.lanes) {
      const want = bases.get(l.lane)?.headHash ?? GENESIS_HASH;
      if (l.prevHash !== want)
        return bad(
          c.eventId,
          `lane ${l.lane} does not continue from ${bases.has(l.lane) ? `checkpoint event ${bases.get(l.lane)?.eventId}` : "the lane's start"}`,
        );
      if (l.count < 1 || l.firstId <= c.fromId || l.lastId > c.toId || l.firstId > l.lastId)
        return bad(c.eventId, `lane ${l.lane}: ids ${l.firstId}–${l.lastId} are not inside the segment`);
      rows += l.count;
      bases.set(l.lane, {
        headHash: l.headHash,
        lastId: l.lastId,
        dropped: (bases.get(l.lane)?.dropped ?? 0) + l.count,
        eventId: c.eventId,
      });
    }
    if (rows !== c.rows) return bad(c.eventId, `its lanes hold ${rows} events but it says ${c.rows}`);
    checked.push({ c, droppedBefore });
    frontier = c.toId;
  }
  return { checked, bases };
}

/**
 * Walks the trail in id order. Each row belongs to one lane (migration 0016), and within a lane id
 * order is chain order, so every lane is checked as its own chain — links, hashes and the heads
 * the anchors signed for it — in one pass over the table. After audit retention (migration 0021)
 * each lane starts from its checkpoint's base hash with the dropped events counted, and the anchor
 * heads inside dropped segments are checked against the checkpoints and, with `archives`, the rows.
 */
export async function verifyAuditChain(q: Queryable, options: VerifyOptions = {}): Promise<AuditChainReport> {
  const pageSize = options.pageSize ?? DEFAULT_VERIFY_PAGE;
  const problems: ChainProblem[] = [];
  const notes: string[] = [];
  const all = options.anchors ?? [];
  for (const a of all)
    if (!a.signatureValid)
      problems.push({
        kind: ChainProblemKind.AnchorSignatureInvalid,
        anchorFile: a.file,
        message: `${named(a)}: signature does not verify with the configured public key`,
      });
  const cp = await checkCheckpoints(q, notes);
  const frontier = cp.checked.at(-1)?.c.toId ?? 0;
  // Only signed statements are evidence; an unsigned one could have been written by the attacker.
  const lanes = new Map<number, LaneWalk>();
  const laneOf = (lane: number): LaneWalk => {
    let w = lanes.get(lane);
    if (!w) {
      const b = cp.bases.get(lane);
      w = {
        claims: [],
        next: 0,
        prevHash: b?.headHash ?? GENESIS_HASH,
        prevId: b?.lastId ?? 0,
        count: b?.dropped ?? 0,
      };
      lanes.set(lane, w);
    }
    return w;
  };
  for (const lane of cp.bases.keys()) laneOf(lane);
  /** Heads inside dropped segments: checked against the checkpoints and archives after the walk. */
  const archived: LaneClaim[] = [];
  for (const a of all)
    if (a.signatureValid)
      for (const head of a.anchor.lanes)
        if (head.lastId > frontier) laneOf(head.lane).claims.push({ from: a, head });
        else if (head.lastId > 0 && !a.previousRun) archived.push({ from: a, head });
  for (const w of lanes.values()) w.claims.sort((x, y) => x.head.lastId - y.head.lastId);

  let checked = 0;
  let headId = 0;
  let broken: ChainProblem | undefined = cp.problem;
  const lanePrefix = (lane: number): string => (lane === 0 ? '' : ` (lane ${lane})`);
  const contradicts = (w: LaneWalk, id: number): { anchorFile?: string; suffix: string } => {
    const c = w.claims.find((x) => x.head.lastId >= id);
    return c
      ? { anchorFile: c.from.file, suffix: `; contradicts ${named(c.from)} (head event ${c.head.lastId})` }
      : { suffix: '' };
  };

  walk: for (let after = 0; !broken; ) {
    const { rows } = await q.query<RawChainRow>(SELECT_AUDIT_CHAIN_RAW, [after, pageSize]);
    for (const raw of rows) {
      const r: AuditChainRow = chainRowOf(raw);
      const id = Number(r.id);
      const w = laneOf(r.chainLane);
      const lane = lanePrefix(r.chainLane);
      checked++;
      if (id <= frontier) {
        const c = cp.checked.find((x) => id > x.c.fromId && id <= x.c.toId) as CheckedCheckpoint;
        broken = {
          kind: ChainProblemKind.CheckpointInvalid,
          eventId: id,
          message: `event ${id}${lane} is inside segment (${c.c.fromId}, ${c.c.toId}] that retention checkpoint event ${c.c.eventId} says was dropped`,
        };
        break walk;
      }
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
        const base = cp.bases.get(r.chainLane);
        const why =
          w.prevId === 0
            ? 'links to an event that is not in the trail, and no retention checkpoint covers it (events were deleted from the start outside retention, or a checkpoint was removed)'
            : base && w.prevId === base.lastId
              ? `does not match the base hash retention checkpoint event ${base.eventId} recorded for the lane (event ${base.lastId}, archived): events after the archived segment were deleted or inserted`
              : `does not match event ${w.prevId}'s hash (a row before it was deleted or inserted)`;
        broken = {
          kind: ChainProblemKind.LinkBroken,
          eventId: id,
          ...(c.anchorFile ? { anchorFile: c.anchorFile } : {}),
          message: `event ${id}${lane}: prev_hash ${why}${c.suffix}`,
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
  let archivesChecked = 0;
  if (!broken) {
    const r = await checkArchived(cp.checked, archived, options.archives, notes);
    archivesChecked = r.archivesChecked;
    problems.push(...r.problems);
  }
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
    checkpoints: cp.checked.length,
    droppedThrough: frontier,
    archivesChecked,
    notes,
  };
}

/**
 * The anchor heads inside dropped segments. Against the checkpoint: a head that is the lane's last
 * dropped event must have the checkpoint's hash, and its count must lie within the lane's events
 * dropped up to that segment. With archives: each checkpoint's archive must be the one it names
 * (manifest SHA-256) and verify, and each head must be in its rows with the same hash and count.
 */
async function checkArchived(
  checkpoints: readonly CheckedCheckpoint[],
  claims: readonly LaneClaim[],
  archives: VerifyOptions['archives'],
  notes: string[],
): Promise<{ problems: ChainProblem[]; archivesChecked: number }> {
  const problems: ChainProblem[] = [];
  let archivesChecked = 0;
  for (const { c, droppedBefore } of checkpoints) {
    const inside = claims.filter((x) => x.head.lastId > c.fromId && x.head.lastId <= c.toId);
    const seg = `segment (${c.fromId}, ${c.toId}] (retention checkpoint event ${c.eventId}, archive ${c.archive.manifest})`;
    for (const x of inside) {
      const l = c.lanes.find((y) => y.lane === x.head.lane);
      const before = droppedBefore.get(x.head.lane) ?? 0;
      const wrong =
        !l ||
        x.head.lastId < l.firstId ||
        x.head.lastId > l.lastId ||
        x.head.count <= before ||
        x.head.count > before + l.count ||
        (x.head.lastId === l.lastId && (x.head.headHash !== l.headHash || x.head.count !== before + l.count));
      if (wrong)
        problems.push({
          kind: ChainProblemKind.AnchorContradicted,
          eventId: x.head.lastId,
          anchorFile: x.from.file,
          message: `event ${x.head.lastId} (lane ${x.head.lane}): ${named(x.from)} signed it as the head (${x.head.count} events) but ${seg} says otherwise of the lane: the dropped segment is not what was anchored`,
        });
    }
    if (!archives) {
      const files = [...new Set(inside.map((x) => x.from.file))];
      if (files.length > 0)
        notes.push(
          `${files.length} anchor(s) with heads in ${seg}: covered by the archive, checked against the checkpoint only (give --archives DIR to check them against its rows)`,
        );
      continue;
    }
    const file = path.join(archives.directory, c.archive.manifest);
    const archiveProblem = (message: string) =>
      problems.push({
        kind: ChainProblemKind.ArchiveInvalid,
        eventId: c.eventId,
        message: `archive ${file}: ${message}`,
      });
    let digest: string;
    try {
      digest = createHash('sha256').update(readFileSync(file)).digest('hex');
    } catch {
      archiveProblem(`missing: ${seg} cannot be checked`);
      continue;
    }
    if (digest !== c.archive.manifestSha256) {
      archiveProblem(`its manifest is not the one retention checkpoint event ${c.eventId} recorded (SHA-256 differs)`);
      continue;
    }
    const report = await verifyArchive(file, archives.publicKey, { lookup: inside.map((x) => x.head) });
    archivesChecked++;
    if (!report.ok) {
      // verifyArchive names the manifest first; here the file is already named.
      archiveProblem(`${report.problem?.kind}: ${report.problem?.message.replace(`${path.basename(file)}: `, '')}`);
      continue;
    }
    for (const x of inside) {
      const got = report.heads.get(`${x.head.lane}:${x.head.lastId}`);
      const count = got ? (droppedBefore.get(x.head.lane) ?? 0) + got.countInSegment : 0;
      if (!got)
        problems.push({
          kind: ChainProblemKind.AnchoredRowMissing,
          eventId: x.head.lastId,
          anchorFile: x.from.file,
          message: `event ${x.head.lastId} (lane ${x.head.lane}) is not in archive ${file}: ${named(x.from)} signed it as the head`,
        });
      else if (got.headHash !== x.head.headHash || count !== x.head.count)
        problems.push({
          kind: ChainProblemKind.AnchorContradicted,
          eventId: x.head.lastId,
          anchorFile: x.from.file,
          message: `event ${x.head.lastId} (lane ${x.head.lane}) in archive ${file}: ${got.headHash !== x.head.headHash ? 'another hash' : `${count} events up to it`} than ${named(x.from)} signed`,
        });
    }
  }
  return { problems, archivesChecked };
}
