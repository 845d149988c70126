import { hostname } from 'node:os';
import type pg from 'pg';
import { normalizeErrorString } from '../../errors.js';
import { childLogger, type Logger } from '../../logger.js';
import { type AuditEventColumns, auditEventFields } from '../audit-log.js';
import { type AuditMessageEvent, buildAuditMessage } from './audit-message.js';
import {
  formatSyslogMessage,
  frameOctetCounted,
  SyslogTlsConnection,
  type SyslogTlsOptions,
  severityOf,
} from './syslog-tls.js';

/**
 * Delivers the audit trail to an Audit Record Repository (IHE ATNA, ITI-20) in id order, from the
 * cursor persisted in audit_export_cursor (migration 0012).
 *
 * Delivery guarantees, honestly:
 * - Nothing before the cursor is resent after a restart; nothing after it is skipped. A repository
 *   or database that is down only delays delivery (reconnect with exponential backoff).
 * - At least once, not exactly once: syslog-TLS (RFC 5425) has no application acknowledgement. The
 *   cursor is advanced right after each write's callback, so a crash (or a database failure)
 *   between the write and the cursor update resends that one event on restart: a duplicate, which
 *   the repository can recognise by its identical EventDateTime, EventID and participants.
 * - A write's callback means the bytes reached our kernel, not the repository's disk. If the
 *   repository dies after reading our last frames but before storing them, or the connection breaks
 *   while frames are still in flight and the break is seen only after their callbacks fired, those
 *   frames are lost to the repository although the cursor passed them. A peer's close is watched
 *   (FIN / close_notify marks the connection broken before the next write), which closes this window
 *   for a repository that stops cleanly while we are idle; it does not close it for one that crashes
 *   mid-stream. Closing it fully needs an acknowledged transport (e.g. RFC 3195 / FHIR AuditEvent).
 */

export interface AuditExporterOptions {
  readonly pool: pg.Pool;
  readonly syslog: SyslogTlsOptions;
  /** PS3.15 A.5.1 AuditSourceID; default the host name. */
  readonly auditSourceId?: string;
  /** How often to look for new events when caught up. */
  readonly pollIntervalMs?: number;
  readonly batchSize?: number;
  readonly backoffBaseMs?: number;
  readonly backoffMaxMs?: number;
  readonly logger?: Logger;
}

interface ExportRow extends AuditEventColumns {
  occurred_at: Date;
  sop_classes: { uid: string; class: string | null }[] | null;
}

const ENSURE_CURSOR = `INSERT INTO audit_export_cursor (destination) VALUES ($1) ON CONFLICT (destination) DO NOTHING`;
const READ_CURSOR = `SELECT last_id FROM audit_export_cursor WHERE destination = $1`;
const ADVANCE_CURSOR = `UPDATE audit_export_cursor SET last_id = $2, sent_count = sent_count + 1, updated_at = now()
WHERE destination = $1 AND last_id < $2`;
// The SOP Class of each SOP instance of an event (the row keeps UIDs only): the instance's own row,
// else the class the event recorded (an exported SR's detail.sopClassUid), else unknown.
const NEXT_EVENTS = `SELECT a.id, a.occurred_at, a.kind, a.event_id, a.event_type_code, a.action_code, a.outcome, a.actor,
       a.source, a.destination, a.patient_id, a.study_instance_uid, a.sop_instance_uids,
       (SELECT coalesce(json_agg(json_build_object('uid', u.uid, 'class', coalesce(i.sop_class_uid, a.detail ->> 'sopClassUid'))
                                 ORDER BY u.n), '[]'::json)
        FROM unnest(a.sop_instance_uids) WITH ORDINALITY AS u(uid, n)
        LEFT JOIN instances i ON i.sop_instance_uid = u.uid) AS sop_classes
FROM audit_events a WHERE a.id > $1 ORDER BY a.id LIMIT $2`;

export function exportDestinationKey(o: Pick<SyslogTlsOptions, 'host' | 'port'>): string {
  return `syslog-tls://${o.host}:${o.port}`;
}

function messageEvent(r: ExportRow): AuditMessageEvent {
  const sopInstances = (r.sop_classes ?? []).map((x) => ({ sopInstanceUid: x.uid, sopClassUid: x.class }));
  return { ...auditEventFields(r), occurredAt: r.occurred_at, sopInstances };
}

export class AuditExporter {
  readonly destination: string;
  readonly #o: AuditExporterOptions;
  readonly #log: Logger;
  #conn: SyslogTlsConnection | undefined;
  #loop: Promise<void> | undefined;
  #stopped = false;
  #wake: (() => void) | undefined;
  #cursor = 0;
  #sent = 0;
  #failures = 0;

  constructor(o: AuditExporterOptions) {
    this.#o = o;
    this.destination = exportDestinationKey(o.syslog);
    this.#log = o.logger ?? childLogger('audit-exporter');
  }

  /** Last id handed to the repository (as persisted); for tests and metrics. */
  get cursor(): number {
    return this.#cursor;
  }
  /** Events written by this process. */
  get sent(): number {
    return this.#sent;
  }
  /** Connection or database failures seen so far (each followed by a backoff). */
  get failures(): number {
    return this.#failures;
  }

  start(): void {
    if (this.#loop || this.#stopped) return;
    this.#loop = this.#run();
  }

  /** Look for new events now instead of at the next poll. */
  wake(): void {
    this.#wake?.();
  }

  /**
   * Stops after the write in progress (its cursor update included); idempotent. With `drainMs`,
   * first waits up to that long for the events already in the trail (application-stop included)
   * to go out; what is left goes out after the next start.
   */
  async stop(drainMs = 0): Promise<void> {
    if (drainMs > 0 && this.#loop && !this.#stopped) {
      const deadline = Date.now() + drainMs;
      try {
        const { rows } = await this.#o.pool.query<{ head: string | null }>('SELECT max(id) AS head FROM audit_events');
        const head = Number(rows[0]?.head ?? 0);
        while (this.#cursor < head && Date.now() < deadline) {
          this.#wake?.();
          await new Promise((r) => setTimeout(r, 20));
        }
      } catch {
        // The database is gone: nothing more can be read to send.
      }
    }
    this.#stopped = true;
    this.#wake?.();
    await this.#loop;
    const c = this.#conn;
    this.#conn = undefined;
    await c?.close();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.#wake = done;
    });
  }

  async #run(): Promise<void> {
    const pool = this.#o.pool;
    const poll = this.#o.pollIntervalMs ?? 1000;
    const batch = this.#o.batchSize ?? 500;
    const base = this.#o.backoffBaseMs ?? 500;
    const max = this.#o.backoffMaxMs ?? 30_000;
    const source = this.#o.auditSourceId ?? hostname();
    let attempt = 0;
    let cursorKnown = false;
    while (!this.#stopped) {
      try {
        if (!cursorKnown) {
          await pool.query(ENSURE_CURSOR, [this.destination]);
          const { rows } = await pool.query<{ last_id: string }>(READ_CURSOR, [this.destination]);
          this.#cursor = Number(rows[0]?.last_id ?? 0);
          cursorKnown = true;
        }
        const { rows } = await pool.query<ExportRow>(NEXT_EVENTS, [this.#cursor, batch]);
        if (rows.length === 0) {
          attempt = 0;
          await this.#sleep(poll);
          continue;
        }
        if (this.#conn?.broken) {
          await this.#conn.close();
          this.#conn = undefined;
        }
        this.#conn ??= await SyslogTlsConnection.connect(this.#o.syslog);
        for (const r of rows) {
          if (this.#stopped) break;
          const ev = messageEvent(r);
          const xml = buildAuditMessage(ev, { auditSourceId: source });
          const frame = frameOctetCounted(
            formatSyslogMessage(xml, { timestamp: ev.occurredAt, hostname: source, severity: severityOf(ev.outcome) }),
          );
          await this.#conn.send(frame);
          this.#sent++;
          // Right after the write's callback: the resend-after-crash window is this one statement.
          await pool.query(ADVANCE_CURSOR, [this.destination, ev.id]);
          this.#cursor = ev.id;
        }
        attempt = 0;
      } catch (err: unknown) {
        this.#failures++;
        const c = this.#conn;
        this.#conn = undefined;
        await c?.close().catch(() => undefined);
        // The persisted cursor is the truth after a failure (a cursor update may have failed).
        cursorKnown = false;
        const delay = Math.min(max, base * 2 ** Math.min(attempt, 20));
        attempt++;
        this.#log.warn('audit export paused; retrying', {
          destination: this.destination,
          cursor: this.#cursor,
          retryInMs: delay,
          error: normalizeErrorString(err),
        });
        if (!this.#stopped) await this.#sleep(delay);
      }
    }
  }
}
