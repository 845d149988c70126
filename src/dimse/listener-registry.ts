import { normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import type { DimseListenerConfig, StorageScp } from './storage-scp.js';

/**
 * The running DIMSE listeners, one StorageScp per local AE title, brought in line with a list of
 * definitions while the gateway runs (issue 11: "a change takes effect on the running listeners
 * without a restart"; MONAI Informatics Gateway's IMonaiAeChangedNotificationService does the same
 * for its SCP). apply() compares by AE title:
 * - new title: a listener is started;
 * - same socket (host, port, TLS), other policy: the listener's policy is replaced; associations in
 *   progress keep the policy they started with (StorageScp.updateListener);
 * - other socket: a listener on the new socket is started first, then the old one retired (it stops
 *   accepting and ends when its associations have ended by themselves: a transfer is not broken);
 * - title gone: its listener is retired the same way.
 * A listener that cannot start (port in use) is reported and the old one, if any, kept.
 */

export interface ApplyReport {
  readonly started: string[];
  readonly updated: string[];
  readonly rebound: string[];
  readonly retired: string[];
  readonly failed: { aeTitle: string; error: string }[];
}

export interface ListenerRegistryOptions {
  /** A listener for one definition, not yet started. */
  readonly create: (listener: DimseListenerConfig) => StorageScp;
  readonly logger?: Logger;
}

const sameSocket = (a: DimseListenerConfig, b: DimseListenerConfig): boolean =>
  a.host === b.host && a.port === b.port && JSON.stringify(a.tls ?? null) === JSON.stringify(b.tls ?? null);

export class ListenerRegistry {
  readonly #opts: ListenerRegistryOptions;
  readonly #log: Logger;
  readonly #scps = new Map<string, StorageScp>();
  /** Listeners retired and still finishing their associations (closed by close()). */
  readonly #retiring = new Set<StorageScp>();
  /** apply() calls run one after the other. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(opts: ListenerRegistryOptions) {
    this.#opts = opts;
    this.#log = opts.logger ?? childLogger('dimse:registry');
  }

  /** AE title → bound port, for the listeners accepting now. */
  get listeners(): { aeTitle: string; port: number; tls: boolean }[] {
    return [...this.#scps.values()].map((s) => ({ aeTitle: s.aeTitle, port: s.port, tls: s.tls }));
  }

  get(aeTitle: string): StorageScp | undefined {
    return this.#scps.get(aeTitle);
  }

  /** Listeners retired that still have associations open. */
  get retiring(): number {
    return this.#retiring.size;
  }

  apply(definitions: readonly DimseListenerConfig[]): Promise<ApplyReport> {
    const run = this.#queue.then(() => this.#apply(definitions));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #apply(definitions: readonly DimseListenerConfig[]): Promise<ApplyReport> {
    const report: ApplyReport = { started: [], updated: [], rebound: [], retired: [], failed: [] };
    if (this.#closed) return report;
    const wanted = new Map(definitions.map((d) => [d.aeTitle, d]));
    for (const [aeTitle, scp] of this.#scps)
      if (!wanted.has(aeTitle)) {
        this.#scps.delete(aeTitle);
        this.#retire(scp);
        report.retired.push(aeTitle);
      }
    for (const d of definitions) {
      const cur = this.#scps.get(d.aeTitle);
      if (cur && sameSocket(cur.listener, d)) {
        if (JSON.stringify(cur.listener) !== JSON.stringify(d)) {
          cur.updateListener(d);
          report.updated.push(d.aeTitle);
        }
        continue;
      }
      const scp = this.#opts.create(d);
      try {
        await scp.start();
      } catch (err: unknown) {
        await scp.close();
        const error = normalizeErrorString(err);
        this.#log.error('DIMSE listener could not start; the previous definition stays in effect', {
          aeTitle: d.aeTitle,
          host: d.host,
          port: d.port,
          error,
        });
        report.failed.push({ aeTitle: d.aeTitle, error });
        continue;
      }
      this.#scps.set(d.aeTitle, scp);
      if (cur) {
        this.#retire(cur);
        report.rebound.push(d.aeTitle);
      } else report.started.push(d.aeTitle);
    }
    if (report.started.length + report.updated.length + report.rebound.length + report.retired.length > 0)
      this.#log.info('DIMSE listeners applied', { ...report });
    return report;
  }

  #retire(scp: StorageScp): void {
    this.#retiring.add(scp);
    void scp.retire().finally(() => {
      this.#retiring.delete(scp);
      void scp.close();
    });
  }

  /** Stops every listener, aborting open associations (gateway stop). Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#queue;
    const all = [...this.#scps.values(), ...this.#retiring];
    this.#scps.clear();
    await Promise.all(all.map((s) => s.close()));
  }
}
