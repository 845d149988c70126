import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { RoleTokens } from './gateway.js';

/**
 * Drives test/support/gateway-child.ts: a test gateway in a process of its own, so that a test
 * measures the gateway's memory apart from jest's and can see it survive (or die) on its own.
 */
const ROOT = path.resolve(__dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

/** VmHWM (peak resident set) and VmRSS of a process in bytes, from /proc/<pid>/status (proc(5)). */
export function memoryOf(pid: number): { peak: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { peak: kb('VmHWM') * 1024, rss: kb('VmRSS') * 1024 };
}

/** Reset VmHWM to the current resident set (`5` to /proc/<pid>/clear_refs, proc(5)). */
export function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

export interface GatewayProcess {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly pid: number;
  readonly baseUrl: string;
  /** One API token per role on the child's database. */
  readonly tokens: RoleTokens;
  /** Rows of a SQL query run by the gateway on its own database. */
  query<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  /** verifyAuditChain on the gateway's database. */
  verifyAudit(): Promise<{ ok: boolean; checked: number }>;
  stderr(): string;
  /** SIGTERM and wait for the exit; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export async function startGatewayProcess(overrides: object): Promise<GatewayProcess> {
  const proc = spawn(NODE, ['-r', './test/support/swc-register.js', 'test/support/gateway-child.ts'], {
    cwd: ROOT,
    env: { ...process.env, RADSCRIBE_TEST_OVERRIDES: JSON.stringify(overrides), RADSCRIBE_LOG_LEVEL: 'warn' },
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const waiting: { prefix: string; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => {
    const i = waiting.findIndex((w) => l.startsWith(w.prefix));
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(l);
  });
  void exited.then((code) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`gateway child exited (${code}): ${err}`));
  });
  const line = (prefix: string): Promise<string> =>
    new Promise((resolve, reject) => {
      if (proc.exitCode !== null) reject(new Error(`gateway child exited (${proc.exitCode}): ${err}`));
      else waiting.push({ prefix, resolve, reject });
    });
  const ready = await line('READY ');
  // One query at a time: answers carry no id, so they must come back in order.
  let chain: Promise<unknown> = Promise.resolve();
  return {
    proc,
    pid: proc.pid as number,
    baseUrl: ready.split(' ')[1] as string,
    tokens: JSON.parse(ready.split(' ').slice(2).join(' ')) as RoleTokens,
    query<T>(sql: string): Promise<T[]> {
      const next = chain.then(async () => {
        const answer = line('QUERY ');
        proc.stdin.write(`QUERY ${JSON.stringify(sql.replace(/\s+/g, ' '))}\n`);
        const parsed = JSON.parse((await answer).slice('QUERY '.length)) as T[] | { error: string };
        if (!Array.isArray(parsed)) throw new Error(`gateway child query failed: ${parsed.error}`);
        return parsed;
      });
      chain = next.catch(() => undefined);
      return next;
    },
    verifyAudit() {
      const next = chain.then(async () => {
        const answer = line('VERIFY ');
        proc.stdin.write('VERIFY\n');
        return JSON.parse((await answer).slice('VERIFY '.length)) as { ok: boolean; checked: number };
      });
      chain = next.catch(() => undefined);
      return next;
    },
    stderr: () => err,
    async stop() {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      return exited;
    },
  };
}
