import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { Queryable } from '../../src/db/pool.js';

/**
 * Load for the database robustness tests and bench (issue 9): many distinct instances made from one
 * real fixture, a STOW-RS client written here (not the gateway's own multipart writer), and the
 * check that compares what clients were told with what the gateway holds.
 */

/**
 * A random UID of exactly `length` characters (at least 12) under the UUID-derived root 2.25
 * (PS3.5 §B.2): components without leading zeros, the first at most 38 digits (below 2^128).
 */
export function uidOfLength(length: number): string {
  const digit = (nonZero: boolean): string =>
    String((nonZero ? 1 : 0) + ((randomBytes(1)[0] as number) % (nonZero ? 9 : 10)));
  let body = '';
  const rest = length - 5;
  const split = rest > 38 ? 30 : -1;
  for (let i = 0; i < rest; i++) {
    if (i === split) body += '.';
    else body += digit(i === 0 || i === split + 1);
  }
  return `2.25.${body}`;
}

/**
 * A copy of a Part 10 file with other UIDs: every occurrence of each `from` (meta header and data
 * set) is overwritten in place by a UID of the same length, so no element length changes.
 */
export function withUids(template: Buffer, replace: ReadonlyMap<string, string>): Buffer {
  const out = Buffer.from(template);
  for (const [from, to] of replace) {
    if (from.length !== to.length) throw new Error(`withUids: ${to} is not as long as ${from}`);
    const needle = Buffer.from(from, 'latin1');
    let at = out.indexOf(needle);
    if (at < 0) throw new Error(`withUids: ${from} not found in the template`);
    while (at >= 0) {
      out.write(to, at, 'latin1');
      at = out.indexOf(needle, at + needle.length);
    }
  }
  return out;
}

export interface StowAnswer {
  readonly status: number;
  readonly retryAfter: string | null;
  /** Referenced SOP Instance UIDs: what the gateway acknowledged. */
  readonly referenced: readonly string[];
  /** Failure Reason (0008,1197) per failed SOP Instance UID. */
  readonly failed: ReadonlyMap<string, number>;
  readonly ms: number;
  /** The request did not complete (connection reset, client timeout). */
  readonly networkError?: string;
}

type JsonAttr = { Value?: unknown[] };
type JsonDataset = Record<string, JsonAttr | undefined>;

/** POST one multipart/related request of application/dicom parts to `{base}/studies`. */
export async function storeInstances(
  base: string,
  files: readonly Buffer[],
  timeoutMs = 120_000,
  /** E.g. the `authorization` of an ingest token (the gateway asks for one, README "Access"). */
  headers: Readonly<Record<string, string>> = {},
): Promise<StowAnswer> {
  const boundary = `b${randomBytes(12).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const f of files) {
    chunks.push(
      Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`, 'latin1'),
      f,
      Buffer.from('\r\n'),
    );
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`, 'latin1'));
  const started = Date.now();
  try {
    const res = await fetch(`${base}/studies`, {
      method: 'POST',
      headers: {
        ...headers,
        'content-type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        accept: 'application/dicom+json',
      },
      body: Buffer.concat(chunks),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    const ms = Date.now() - started;
    const referenced: string[] = [];
    const failed = new Map<string, number>();
    let body: JsonDataset = {};
    try {
      body = JSON.parse(text) as JsonDataset;
    } catch {
      // A non-JSON answer has no references; status tells what happened.
    }
    for (const item of (body['00081199']?.Value ?? []) as JsonDataset[]) {
      const uid = item['00081155']?.Value?.[0];
      if (typeof uid === 'string') referenced.push(uid);
    }
    for (const item of (body['00081198']?.Value ?? []) as JsonDataset[]) {
      const uid = item['00081155']?.Value?.[0];
      const reason = item['00081197']?.Value?.[0];
      if (typeof uid === 'string' && typeof reason === 'number') failed.set(uid, reason);
    }
    return { status: res.status, retryAfter: res.headers.get('retry-after'), referenced, failed, ms };
  } catch (err: unknown) {
    return {
      status: 0,
      retryAfter: null,
      referenced: [],
      failed: new Map(),
      ms: Date.now() - started,
      networkError: err instanceof Error ? err.message : String(err),
    };
  }
}

export interface StoreCheck {
  readonly acknowledged: number;
  readonly rows: number;
  readonly files: number;
  /** Acknowledged, but no row / no file / no successful instance-received audit event. */
  readonly missingRows: readonly string[];
  readonly missingFiles: readonly string[];
  readonly missingAudit: readonly string[];
  /** Acknowledged UIDs with more than one successful instance-received event. */
  readonly duplicateAudit: readonly string[];
  /** Rows whose file is missing (whether acknowledged or not). */
  readonly rowsWithoutFile: readonly string[];
}

/** Compare what clients were told was stored with rows, files and the audit trail. */
export async function checkStored(q: Queryable, acknowledged: Iterable<string>): Promise<StoreCheck> {
  const acked = [...new Set(acknowledged)];
  const { rows } = await q.query<{ sop_instance_uid: string; file_path: string }>(
    'SELECT sop_instance_uid, file_path FROM instances',
  );
  const byUid = new Map(rows.map((r) => [r.sop_instance_uid, r.file_path]));
  const audit = await q.query<{ uid: string; n: string }>(
    `SELECT u AS uid, count(*) AS n FROM audit_events, unnest(sop_instance_uids) AS u
     WHERE kind = 'instance-received' AND outcome = 0 GROUP BY u`,
  );
  const audited = new Map(audit.rows.map((r) => [r.uid, Number(r.n)]));
  const rowsWithoutFile = rows.filter((r) => !existsSync(r.file_path)).map((r) => r.sop_instance_uid);
  return {
    acknowledged: acked.length,
    rows: rows.length,
    files: rows.length - rowsWithoutFile.length,
    missingRows: acked.filter((u) => !byUid.has(u)),
    missingFiles: acked.filter((u) => {
      const p = byUid.get(u);
      return p === undefined || !existsSync(p);
    }),
    missingAudit: acked.filter((u) => !audited.has(u)),
    duplicateAudit: acked.filter((u) => (audited.get(u) ?? 0) > 1),
    rowsWithoutFile,
  };
}

/** Median, min and max of a list of numbers (0s for an empty list). */
export function spread(values: readonly number[]): { median: number; min: number; max: number } {
  if (values.length === 0) return { median: 0, min: 0, max: 0 };
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { median, min: s[0] as number, max: s[s.length - 1] as number };
}
