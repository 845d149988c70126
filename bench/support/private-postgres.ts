import { execFile } from 'node:child_process';
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './free-port.js';

/**
 * A PostgreSQL cluster of our own for fault tests (issue 9): initdb into a temporary directory, its
 * own port, listening only on a Unix socket in its own directory, started and stopped by the test.
 * The system server is never touched. As root (the dev container) the server runs as the
 * `postgres` user, which initdb and postgres require.
 */

const run = promisify(execFile);

/** How the server is stopped (pg_ctl -m): fast ends sessions with 57P01; immediate is a crash. */
export const StopMode = { Fast: 'fast', Immediate: 'immediate' } as const;
export type StopMode = (typeof StopMode)[keyof typeof StopMode];

export interface PrivatePostgres {
  /** postgresql:// URL of the cluster's `postgres` database over its socket. */
  readonly url: string;
  readonly port: number;
  /** The server's Unix socket (`<dir>/.s.PGSQL.<port>`), for proxies in front of it. */
  readonly socketPath: string;
  stop(mode?: StopMode): Promise<void>;
  start(): Promise<void>;
  /** Stop (immediate) and delete the cluster. Idempotent. */
  destroy(): Promise<void>;
}

/** The newest installed server's bin directory, or undefined when none is installed. */
export function postgresBinDir(): string | undefined {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(path.join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? path.join(root, versions[0], 'bin') : undefined;
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  if (!bin) throw new Error('no PostgreSQL server under /usr/lib/postgresql/*/bin');
  const root = mkdtempSync(path.join(tmpdir(), 'rs-pg-'));
  const data = path.join(root, 'data');
  const sock = path.join(root, 'sock');
  mkdirSync(sock);
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: g } = await run('id', ['-g', 'postgres']);
    chownSync(root, Number(stdout.trim()), Number(g.trim()));
    chownSync(sock, Number(stdout.trim()), Number(g.trim()));
  }
  const pgRun = (tool: string, args: string[]) =>
    asRoot
      ? run('runuser', ['-u', 'postgres', '--', path.join(bin, tool), ...args], { timeout: 60_000 })
      : run(path.join(bin, tool), args, { timeout: 60_000 });
  await pgRun('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
  const port = await freePort();
  const serverOptions = `-p ${port} -k ${sock} -c listen_addresses='' -c fsync=on -c max_connections=40`;
  const log = path.join(root, 'server.log');
  let running = false;
  const start = async (): Promise<void> => {
    await pgRun('pg_ctl', ['-D', data, '-l', log, '-o', serverOptions, '-w', '-t', '60', 'start']);
    running = true;
  };
  const stop = async (mode: StopMode = StopMode.Fast): Promise<void> => {
    await pgRun('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '60', 'stop']);
    running = false;
  };
  await start();
  let destroyed = false;
  return {
    url: `postgresql://postgres@/postgres?host=${encodeURIComponent(sock)}&port=${port}`,
    port,
    socketPath: path.join(sock, `.s.PGSQL.${port}`),
    start,
    stop,
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      if (running) await stop(StopMode.Immediate).catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/**
 * Runs a database benchmark on DATABASE_URL when set (it makes its own schema there), else on a
 * private cluster started for it and destroyed after; `fn` gets a name for the report and the URL.
 */
export async function onBenchPostgres(fn: (name: string, url: string) => Promise<void>): Promise<void> {
  if (process.env.DATABASE_URL) {
    await fn('PostgreSQL (DATABASE_URL)', process.env.DATABASE_URL);
    return;
  }
  const server = await startPrivatePostgres();
  try {
    await fn('PostgreSQL (private cluster)', server.url);
  } finally {
    await server.destroy();
  }
}
