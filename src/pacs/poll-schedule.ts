import type { Logger } from 'winston';
import { errorCodeOf, normalizeErrorString, RETRYABLE_CODES } from '../errors.js';

/** Exponential backoff after failed polls: initialMs × factor^(n−1), at most maxMs. */
export interface BackoffOptions {
  readonly initialMs: number;
  readonly maxMs: number;
  readonly factor: number;
}

/**
 * The timer loop a PACS poller runs (QIDO-RS and C-FIND alike): one poll at a time, the next
 * `intervalMs` after a success, or after an exponential backoff after a failure; `stop()` waits
 * for the poll in flight. A failure is logged with its code only (no PHI).
 */
export class PollSchedule {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<unknown> | undefined;
  private running = false;
  private consecutiveFailures = 0;

  constructor(
    private readonly poll: () => Promise<unknown>,
    private readonly o: {
      readonly intervalMs: number;
      readonly backoff: BackoffOptions;
      readonly log: Logger;
      /** Log message of a failed poll, e.g. 'QIDO poll failed'. */
      readonly failedMessage: string;
    },
  ) {}

  /** Start polling now and then every `intervalMs` (or the backoff delay after a failed poll). Idempotent. */
  start(): void {
    if (this.running) return;
    this.running = true;
    this.schedule(0);
  }

  /** Stop scheduling and wait for an in-flight poll to finish. Idempotent. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.inFlight?.catch(() => undefined);
  }

  private schedule(delayMs: number): void {
    if (!this.running) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      const p = this.poll().then(
        () => {
          this.consecutiveFailures = 0;
          return this.o.intervalMs;
        },
        (err: unknown) => {
          this.consecutiveFailures++;
          const b = this.o.backoff;
          const delay = Math.min(b.maxMs, b.initialMs * b.factor ** (this.consecutiveFailures - 1));
          const code = errorCodeOf(err);
          this.o.log.log(RETRYABLE_CODES.has(code) ? 'warn' : 'error', this.o.failedMessage, {
            code,
            error: normalizeErrorString(err),
            retryInMs: delay,
            consecutiveFailures: this.consecutiveFailures,
          });
          return delay;
        },
      );
      this.inFlight = p;
      void p.then((next) => {
        this.inFlight = undefined;
        this.schedule(next);
      });
    }, delayMs);
    this.timer.unref?.();
  }
}
