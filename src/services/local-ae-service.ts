import { type AeConfigStore, ConfigEntity } from '../config/ae-store.js';
import type { ApplyReport, ListenerRegistry } from '../dimse/listener-registry.js';
import type { DimseListenerConfig } from '../dimse/storage-scp.js';
import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';

/**
 * Keeps the running listeners of this process in line with the local_aes table (migration 0022):
 * after a change through this process's admin API at once (refresh), and after a change made by
 * another gateway process on the same database within `pollMs`, by polling the one-row
 * ae_config_generation counter that every change bumps. Polling works the same on PostgreSQL and
 * on the embedded PGlite (which has no LISTEN across processes) and costs one primary-key read.
 */
export const DEFAULT_AE_CONFIG_POLL_MS = 2_000;

export interface LocalAeServiceOptions {
  readonly store: AeConfigStore;
  readonly registry: ListenerRegistry;
  readonly pollMs?: number;
  /** Told the AE titles after each reload (the per-AE DICOMweb paths follow the listeners). */
  readonly onLocalAes?: (listeners: readonly DimseListenerConfig[]) => void;
  readonly logger?: Logger;
}

export class LocalAeService {
  readonly #o: LocalAeServiceOptions;
  readonly #log: Logger;
  #generation = -1;
  #timer: NodeJS.Timeout | undefined;
  #refreshing: Promise<ApplyReport | undefined> | undefined;

  constructor(o: LocalAeServiceOptions) {
    this.#o = o;
    this.#log = o.logger ?? childLogger('local-aes');
  }

  get registry(): ListenerRegistry {
    return this.#o.registry;
  }

  /**
   * Reloads the definitions and applies them when the generation moved (or `force`). Concurrent
   * calls share one reload; a call made while one runs starts another after it (it may have been
   * made for a change the running one did not see).
   */
  async refresh(force = false): Promise<ApplyReport | undefined> {
    const prev = this.#refreshing;
    const run = (async () => {
      await prev?.catch(() => undefined);
      const generation = await this.#o.store.generation();
      if (!force && generation === this.#generation) return undefined;
      const defs = (await this.#o.store.list(ConfigEntity.LocalAe)).map((e) => e.definition);
      const report = await this.#o.registry.apply(defs);
      this.#generation = generation;
      this.#o.onLocalAes?.(defs);
      return report;
    })();
    this.#refreshing = run;
    try {
      return await run;
    } finally {
      if (this.#refreshing === run) this.#refreshing = undefined;
    }
  }

  /** First load (listeners started) and the poll; a failed poll is logged and retried next time. */
  async start(): Promise<void> {
    const report = await this.refresh(true);
    const failed = report?.failed ?? [];
    if (failed.length > 0)
      throw new RadScribeError(
        ErrorCode.ConfigInvalid,
        `dimse: listeners could not start: ${failed.map((f) => `${f.aeTitle} (${f.error})`).join(', ')}`,
      );
    this.#timer = setInterval(() => {
      this.refresh().catch((err: unknown) =>
        this.#log.warn('could not reload local AEs', { error: normalizeErrorString(err) }),
      );
    }, this.#o.pollMs ?? DEFAULT_AE_CONFIG_POLL_MS);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    await this.#refreshing?.catch(() => undefined);
    await this.#o.registry.close();
  }
}
