import type { PGlite } from '@electric-sql/pglite';

/**
 * One PGlite is one PostgreSQL backend: one session, one unnamed prepared statement, one open
 * transaction. pglite-socket 0.2.17 serves several sockets from it and queues *protocol messages*,
 * not units of work: between one connection's Parse and its Sync another connection's Parse can run
 * (it replaces the unnamed statement the first one then binds: wrong rows or none), and an
 * autocommit INSERT can land inside another connection's open transaction and vanish with its
 * ROLLBACK (issue 9: a lost audit event). Its queue also stops for good when PGlite throws
 * (`processing` stays set), which left every later query to its client-side timeout.
 *
 * This gate replaces that queue. A connection owns the session from its first message until a
 * ReadyForQuery (PS3 of the frontend/backend protocol, PostgreSQL docs §55.2.2) reports the backend
 * idle, status 'I'. While it reports 'T' (in a transaction) or 'E' (failed transaction), or while an
 * extended-query cycle has not reached its Sync, only the owner's messages run; everyone else waits in
 * arrival order. When the owner disconnects, its cycle is closed (Sync) and its transaction rolled
 * back before the next connection runs.
 */

/** ReadyForQuery: 'Z', Int32 length 5, Byte1 status (PostgreSQL docs §55.7). */
const READY_FOR_QUERY = 0x5a;
const READY_LENGTH = 6;
const STATUS_IDLE = 0x49; // 'I'
/** A bare Sync message: 'S', Int32 length 4. */
const SYNC = new Uint8Array([0x53, 0, 0, 0, 4]);

interface Waiting {
  readonly handlerId: number;
  readonly message: Uint8Array;
  readonly onData: (data: Uint8Array) => void;
  readonly resolve: (bytes: number) => void;
  readonly reject: (err: Error) => void;
}

/** True when `tail` (the last bytes a response ended with) is a ReadyForQuery with status idle. */
export function endsIdle(tail: Uint8Array): boolean {
  if (tail.length < READY_LENGTH) return false;
  const z = tail.length - READY_LENGTH;
  return (
    tail[z] === READY_FOR_QUERY &&
    tail[z + 1] === 0 &&
    tail[z + 2] === 0 &&
    tail[z + 3] === 0 &&
    tail[z + 4] === 5 &&
    tail[z + 5] === STATUS_IDLE
  );
}

/** Keep the last `READY_LENGTH` bytes of a stream seen chunk by chunk. */
function keepTail(tail: Uint8Array, chunk: Uint8Array): Uint8Array {
  if (chunk.length >= READY_LENGTH) return chunk.slice(chunk.length - READY_LENGTH);
  const joined = new Uint8Array(tail.length + chunk.length);
  joined.set(tail);
  joined.set(chunk, tail.length);
  return joined.slice(Math.max(0, joined.length - READY_LENGTH));
}

/**
 * The session gate, with the four methods pglite-socket's handlers and server call on their queue
 * (`enqueue`, `getQueueLength`, `clearQueueForHandler`, `clearTransactionIfNeeded`).
 */
export class PgliteSessionGate {
  readonly #db: PGlite;
  #owner: number | null = null;
  #waiting: Waiting[] = [];
  #pumping = false;

  constructor(db: PGlite) {
    this.#db = db;
  }

  /** The connection that holds the session now, if any (for tests and stats). */
  get owner(): number | null {
    return this.#owner;
  }

  enqueue(handlerId: number, message: Uint8Array, onData: (data: Uint8Array) => void): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#waiting.push({ handlerId, message, onData, resolve, reject });
      void this.#pump();
    });
  }

  getQueueLength(): number {
    return this.#waiting.length;
  }

  clearQueueForHandler(handlerId: number): void {
    this.#waiting = this.#waiting.filter((w) => {
      if (w.handlerId !== handlerId) return true;
      w.reject(new Error('connection closed'));
      return false;
    });
  }

  /** The connection went away: end what it left open, then let the next one in. */
  async clearTransactionIfNeeded(handlerId: number): Promise<void> {
    if (this.#owner !== handlerId) return;
    try {
      // A cycle cut before its Sync is closed first; then an open transaction is rolled back.
      await this.#db.runExclusive(() => this.#db.execProtocolRaw(SYNC));
      if (this.#db.isInTransaction()) await this.#db.exec('ROLLBACK');
    } catch {
      // Nothing more can be done for a session PGlite refuses to reset; the next owner sees its state.
    } finally {
      if (this.#owner === handlerId) this.#owner = null;
      void this.#pump();
    }
  }

  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (;;) {
        const owner = this.#owner;
        const i =
          owner === null ? (this.#waiting.length > 0 ? 0 : -1) : this.#waiting.findIndex((w) => w.handlerId === owner);
        if (i < 0) return;
        const [item] = this.#waiting.splice(i, 1);
        if (!item) return;
        this.#owner = item.handlerId;
        let tail: Uint8Array = new Uint8Array(0);
        let bytes = 0;
        try {
          await this.#db.runExclusive(() =>
            this.#db.execProtocolRawStream(item.message, {
              onRawData: (chunk: Uint8Array) => {
                bytes += chunk.length;
                tail = keepTail(tail, chunk);
                item.onData(chunk);
              },
            }),
          );
        } catch (err: unknown) {
          // The owner keeps the session: its handler fails and detaches, which releases it above.
          item.reject(err instanceof Error ? err : new Error(String(err)));
          continue;
        }
        if (endsIdle(tail)) this.#owner = null;
        item.resolve(bytes);
      }
    } finally {
      this.#pumping = false;
    }
  }
}

/**
 * Put the gate in place of pglite-socket's own queue, before `start()`: handlers take the server's
 * queue when they are created. Fails loudly if the pinned pglite-socket changed shape.
 */
export function installSessionGate(server: object, db: PGlite): PgliteSessionGate {
  const s = server as { queryQueue?: { enqueue?: unknown } };
  if (typeof s.queryQueue?.enqueue !== 'function')
    throw new Error('pglite-socket has no queryQueue to replace: check the pinned version (0.2.17)');
  const gate = new PgliteSessionGate(db);
  (s as { queryQueue: unknown }).queryQueue = gate;
  return gate;
}
