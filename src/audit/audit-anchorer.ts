import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import type { Queryable } from '../db/pool.js';
import { normalizeErrorString } from '../errors.js';
import { childLogger, type Logger } from '../logger.js';
import {
  ANCHOR_FORMAT,
  type AuditAnchor,
  anchorTopId,
  type LaneHead,
  readChainHead,
  signAnchor,
  writeAnchor,
} from './audit-anchor.js';

export interface AuditAnchorerOptions {
  readonly pool: Queryable;
  readonly directory: string;
  readonly intervalMs: number;
  readonly privateKey: KeyObject;
  readonly logger?: Logger;
  /** The clock of `anchoredAt` (tests). */
  readonly now?: () => Date;
}

/**
 * Writes a signed anchor of the chain head every `intervalMs`, once at start and once at stop
 * (issue 12: "at a configured interval and at shutdown"). A failed anchor (database or disk down)
 * is logged and retried at the next interval: it must not stop the gateway, and the next anchor
 * covers everything the missed one would have.
 */
export class AuditAnchorer {
  private readonly log: Logger;
  #timer: NodeJS.Timeout | undefined;
  #chain: Promise<unknown> = Promise.resolve();
  /** The lane heads this process anchored last: the next counts read only the rows after them. */
  #last: readonly LaneHead[] | undefined;
  #stopped = false;

  constructor(private readonly opts: AuditAnchorerOptions) {
    this.log = opts.logger ?? childLogger('audit-anchor');
  }

  /** Anchors the current head now; anchors are written one at a time, in order. */
  anchorNow(): Promise<{ file: string; anchor: AuditAnchor }> {
    const run = this.#chain.then(async () => {
      mkdirSync(this.opts.directory, { recursive: true });
      const lanes = await readChainHead(this.opts.pool, this.#last);
      const anchoredAt = (this.opts.now?.() ?? new Date()).toISOString();
      const anchor = signAnchor({ format: ANCHOR_FORMAT, lanes, anchoredAt }, this.opts.privateKey);
      const file = writeAnchor(this.opts.directory, anchor);
      this.#last = lanes;
      const count = lanes.reduce((n, l) => n + l.count, 0);
      this.log.info('audit chain anchored', { lastId: anchorTopId(anchor), lanes: lanes.length, count, file });
      return { file, anchor };
    });
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /** First anchor now (a failure here fails the start: the configured key or directory is wrong). */
  async start(): Promise<void> {
    await this.anchorNow();
    this.#timer = setInterval(() => {
      this.anchorNow().catch((err: unknown) =>
        this.log.warn('could not anchor the audit chain', { error: normalizeErrorString(err) }),
      );
    }, this.opts.intervalMs);
    this.#timer.unref();
  }

  /** Stops the interval and writes the shutdown anchor. Idempotent. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    try {
      await this.anchorNow();
    } catch (err: unknown) {
      this.log.warn('could not anchor the audit chain at shutdown', { error: normalizeErrorString(err) });
    }
  }
}
