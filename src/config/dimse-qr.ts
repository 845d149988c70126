import { aeTitleProblem } from '../dimse/ae-title.js';
import { EncodableCharacterSet } from '../dimse/identifier.js';
import type { QrPeer } from '../dimse/query-retrieve-scu.js';
import { DEFAULT_REQUESTOR_TIMEOUTS } from '../dimse/requestor.js';

/**
 * `remoteNodes[].dimse`: a remote node's DIMSE address (AE title, host, port), the DIMSE operations
 * it allows, and its C-FIND/C-MOVE poller (`qr`, src/pacs/dimse-poller.ts). Kept inside the node
 * object (which is what gets stored per node) and validated here; src/config.ts calls
 * `validateDimseNode` for each node and `checkDimseNodes` once the listeners are known.
 */

/** DIMSE operations a node may be used for. Closed set. */
export const DimseOperation = { Echo: 'echo', Find: 'find', Move: 'move', Get: 'get', Store: 'store' } as const;
export type DimseOperation = (typeof DimseOperation)[keyof typeof DimseOperation];

export interface DimseQrPollConfig {
  enabled: boolean;
  intervalMs: number;
  /** Studies whose StudyDate/StudyTime lies within this many minutes before now are considered. */
  lookbackMinutes: number;
  /** ModalitiesInStudy (0008,0061) values to match; empty = all. */
  modalities: string[];
  /** Matches kept per C-FIND at most (C-CANCEL beyond it). */
  maxResults: number;
  /** Wall-clock bound of one C-FIND (C-CANCEL after it). */
  findTimeLimitMs: number;
  backoff: { initialMs: number; maxMs: number; factor: number };
  maxRetrieveAttempts: number;
}

export interface DimseNodeConfig {
  aeTitle: string;
  host: string;
  port: number;
  /** Our AE title on associations to this node. */
  callingAeTitle: string;
  operations: DimseOperation[];
  /** One of `dimse.listeners[].aeTitle`: where C-MOVE sends (the node must know its host and port). */
  moveDestination?: string;
  /** Specific Character Set for non-ASCII query text; default chosen per query (identifier.ts). */
  characterSet?: EncodableCharacterSet;
  connectTimeoutMs: number;
  associationTimeoutMs: number;
  responseTimeoutMs: number;
  qr: DimseQrPollConfig;
}

export const DIMSE_NODE_DEFAULTS = {
  callingAeTitle: 'RADSCRIBE',
  operations: [DimseOperation.Echo, DimseOperation.Find, DimseOperation.Move],
  qr: {
    enabled: false,
    intervalMs: 60_000,
    lookbackMinutes: 1440,
    maxResults: 500,
    findTimeLimitMs: 120_000,
    backoff: { initialMs: 5_000, maxMs: 300_000, factor: 2 },
    maxRetrieveAttempts: 5,
  },
} as const;

/** What this module needs of config.ts's validator (it collects every problem, reported at once). */
export interface NodeValidator {
  problem(p: string, msg: string): void;
  has(o: Record<string, unknown>, k: string): boolean;
  obj(o: Record<string, unknown>, k: string, parent?: string): Record<string, unknown>;
  str(o: Record<string, unknown>, k: string, parent?: string): string;
  strArr(o: Record<string, unknown>, k: string, parent?: string): string[];
  int(o: Record<string, unknown>, k: string, parent: string, min: number, max: number, def?: number): number;
  num(o: Record<string, unknown>, k: string, parent: string, min: number, max: number, def: number): number;
  bool(o: Record<string, unknown>, k: string, parent: string, def: boolean): boolean;
}

const MAX_MS = 86_400_000;

function aeTitle(v: NodeValidator, o: Record<string, unknown>, k: string, p: string, def?: string): string {
  const t = v.has(o, k) || def === undefined ? v.str(o, k, p) : def;
  const why = t === '' ? undefined : aeTitleProblem(t);
  if (why) v.problem(`${p}.${k}`, `not a valid AE title: ${why}`);
  return t.trim();
}

export function validateDimseNode(v: NodeValidator, o: Record<string, unknown>, p: string): DimseNodeConfig {
  const d = DIMSE_NODE_DEFAULTS;
  const ops: readonly string[] = Object.values(DimseOperation);
  const operations = v.has(o, 'operations') ? v.strArr(o, 'operations', p) : [...d.operations];
  for (const op of operations)
    if (!ops.includes(op)) v.problem(`${p}.operations`, `"${op}" is not one of ${ops.join(', ')}`);
  const moveDestination = v.has(o, 'moveDestination') ? aeTitle(v, o, 'moveDestination', p) : undefined;
  if (operations.includes(DimseOperation.Move) && moveDestination === undefined)
    v.problem(`${p}.moveDestination`, 'is required when operations include move');
  let characterSet: EncodableCharacterSet | undefined;
  if (v.has(o, 'characterSet')) {
    const cs = v.str(o, 'characterSet', p);
    const allowed: readonly string[] = Object.values(EncodableCharacterSet);
    if (!allowed.includes(cs)) v.problem(`${p}.characterSet`, `must be one of ${allowed.join(', ')}`);
    else characterSet = cs as EncodableCharacterSet;
  }
  const q = v.has(o, 'qr') ? v.obj(o, 'qr', p) : {};
  const qp = `${p}.qr`;
  const b = v.has(q, 'backoff') ? v.obj(q, 'backoff', qp) : {};
  const bp = `${qp}.backoff`;
  const backoff = {
    initialMs: v.int(b, 'initialMs', bp, 10, MAX_MS, d.qr.backoff.initialMs),
    maxMs: v.int(b, 'maxMs', bp, 10, MAX_MS, d.qr.backoff.maxMs),
    factor: v.num(b, 'factor', bp, 1, 10, d.qr.backoff.factor),
  };
  if (backoff.maxMs < backoff.initialMs) v.problem(`${bp}.maxMs`, `must not be less than ${bp}.initialMs`);
  const modalities = v.has(q, 'modalities') ? v.strArr(q, 'modalities', qp) : [];
  // CS (PS3.5 Table 6.2-1): upper case, digits, space, underscore; at most 16.
  for (const m of modalities)
    if (!/^[A-Z0-9_ ]{1,16}$/.test(m)) v.problem(`${qp}.modalities`, `"${m}" is not a modality code (CS)`);
  const qr: DimseQrPollConfig = {
    enabled: v.bool(q, 'enabled', qp, d.qr.enabled),
    intervalMs: v.int(q, 'intervalMs', qp, 100, MAX_MS, d.qr.intervalMs),
    lookbackMinutes: v.int(q, 'lookbackMinutes', qp, 1, 36500 * 1440, d.qr.lookbackMinutes),
    modalities,
    maxResults: v.int(q, 'maxResults', qp, 1, 100_000, d.qr.maxResults),
    findTimeLimitMs: v.int(q, 'findTimeLimitMs', qp, 100, MAX_MS, d.qr.findTimeLimitMs),
    backoff,
    maxRetrieveAttempts: v.int(q, 'maxRetrieveAttempts', qp, 1, 1000, d.qr.maxRetrieveAttempts),
  };
  if (qr.enabled && !(operations.includes(DimseOperation.Find) && operations.includes(DimseOperation.Move)))
    v.problem(`${qp}.enabled`, 'the C-FIND/C-MOVE poller needs operations find and move');
  const t = DEFAULT_REQUESTOR_TIMEOUTS;
  return {
    aeTitle: aeTitle(v, o, 'aeTitle', p),
    host: v.str(o, 'host', p),
    port: v.int(o, 'port', p, 1, 65535),
    callingAeTitle: aeTitle(v, o, 'callingAeTitle', p, d.callingAeTitle),
    operations: operations as DimseOperation[],
    ...(moveDestination !== undefined ? { moveDestination } : {}),
    ...(characterSet ? { characterSet } : {}),
    connectTimeoutMs: v.int(o, 'connectTimeoutMs', p, 100, 3_600_000, t.connectMs),
    associationTimeoutMs: v.int(o, 'associationTimeoutMs', p, 100, 3_600_000, t.artimMs),
    responseTimeoutMs: v.int(o, 'responseTimeoutMs', p, 100, 3_600_000, t.dimseMs),
    qr,
  };
}

/** Cross-checks once the listeners are known: a Move Destination must be one of our own AE titles. */
export function checkDimseNodes(
  v: Pick<NodeValidator, 'problem'>,
  nodes: readonly { name: string; dimse?: DimseNodeConfig | undefined }[],
  listenerAeTitles: readonly string[],
): void {
  nodes.forEach((n, i) => {
    const dest = n.dimse?.moveDestination;
    if (dest !== undefined && !listenerAeTitles.includes(dest))
      v.problem(
        `remoteNodes[${i}].dimse.moveDestination`,
        `"${dest}" is not one of dimse.listeners[].aeTitle (${listenerAeTitles.join(', ') || 'none configured'})`,
      );
  });
}

/** The Q/R peer of a node (find-scu.ts, move-scu.ts). */
export function qrPeerOf(d: DimseNodeConfig): QrPeer {
  return {
    host: d.host,
    port: d.port,
    calledAeTitle: d.aeTitle,
    callingAeTitle: d.callingAeTitle,
    timeouts: { connectMs: d.connectTimeoutMs, artimMs: d.associationTimeoutMs, dimseMs: d.responseTimeoutMs },
    ...(d.characterSet ? { characterSet: d.characterSet } : {}),
  };
}

/** The poller settings of a node (src/pacs/dimse-poller.ts). */
export function dimsePollerSettings(d: DimseNodeConfig): Omit<DimseQrPollConfig, 'enabled'> {
  const { enabled: _enabled, ...rest } = d.qr;
  return { ...rest, modalities: [...rest.modalities], backoff: { ...rest.backoff } };
}
