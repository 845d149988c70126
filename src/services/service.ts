import { ErrorCode, normalizeErrorString, RadScribeError } from '../errors.js';
import type { Logger } from '../logger.js';

/**
 * One long-lived part of the running gateway (database, inference process, HTTP listener, job
 * worker, poller …). STYLE rule 11: every resource has an owner with an idempotent close. The
 * gateway is an ordered list of these: started in order, closed in reverse, and a start that fails
 * closes everything started before it (and the failing service itself, whose close must cope with a
 * half-done start).
 */
export interface Service {
  readonly name: string;
  start(): Promise<void>;
  /** Releases what start() acquired; safe to call twice, before start, and after a failed start. */
  close(): Promise<void>;
}

/**
 * A service that owns one value: `open` creates it at start, `dispose` releases it at close. Later
 * services read `value` from their own start(), which runs after this one's (order is the list's).
 */
export class Resource<T> implements Service {
  #value: T | undefined;
  #opened = false;
  #closing: Promise<void> | undefined;

  constructor(
    readonly name: string,
    private readonly open: () => Promise<T>,
    private readonly dispose: (value: T) => Promise<void> = async () => undefined,
  ) {}

  /** The opened value; stays readable after close so callers can inspect its final state. */
  get value(): T {
    if (!this.#opened) throw new RadScribeError(ErrorCode.Internal, `${this.name} is not started`);
    return this.#value as T;
  }

  get started(): boolean {
    return this.#opened;
  }

  async start(): Promise<void> {
    if (this.#opened) return;
    if (this.#closing) throw new RadScribeError(ErrorCode.Internal, `${this.name} was closed`);
    this.#value = await this.open();
    this.#opened = true;
  }

  close(): Promise<void> {
    this.#closing ??= this.#opened ? this.dispose(this.#value as T) : Promise.resolve();
    return this.#closing;
  }
}

/** A step with no value of its own (an audit record at start, at stop, or both). */
export function task(
  name: string,
  onStart: () => Promise<void>,
  onClose: () => Promise<void> = async () => undefined,
): Resource<true> {
  return new Resource<true>(
    name,
    async () => {
      await onStart();
      return true;
    },
    onClose,
  );
}

/**
 * Starts `services` in order. If one fails, closes it and every service started before it, in
 * reverse, then rethrows the start error (close errors are logged, never mask the cause).
 */
export async function startInOrder(services: readonly Service[], log: Logger): Promise<void> {
  for (let i = 0; i < services.length; i++) {
    const s = services[i] as Service;
    try {
      await s.start();
      log.debug('service started', { service: s.name });
    } catch (err: unknown) {
      log.error('service failed to start; closing the ones already started', {
        service: s.name,
        error: normalizeErrorString(err),
      });
      await closeInReverse(services.slice(0, i + 1), log);
      throw err;
    }
  }
}

/** Closes `services` last-first; every close runs even when an earlier one fails (each is logged). */
export async function closeInReverse(services: readonly Service[], log: Logger): Promise<void> {
  for (const s of [...services].reverse()) {
    try {
      await s.close();
    } catch (err: unknown) {
      log.warn('service failed to close', { service: s.name, error: normalizeErrorString(err) });
    }
  }
}
