import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { pipeline } from 'node:stream/promises';
import type { DicomJsonDataset } from '../../src/pacs/dicom-json.js';
import { multipartRelatedContentType, newBoundary } from '../../src/pacs/media-type.js';
import { multipartBody, multipartBodyLength } from '../../src/pacs/multipart.js';
import type { RoleTokens } from './gateway.js';

/** Drives test/support/gateway-child.ts: a gateway in its own process, so its memory is its own. */

const ROOT = path.resolve(__dirname, '../..');
const NODE = path.join(ROOT, 'node_modules/.bin/node');

/** VmHWM (peak resident set) and VmRSS of a process in bytes, from /proc/<pid>/status (proc(5)). */
export function memoryOf(pid: number): { peak: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { peak: kb('VmHWM') * 1024, rss: kb('VmRSS') * 1024 };
}

export interface GatewayChild {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly baseUrl: string;
  /** One API token per role on the child's database. */
  readonly tokens: RoleTokens;
  /** Send one protocol command and wait for its answer line; the JSON after the command word. */
  ask<T>(cmd: string, arg?: string): Promise<T>;
  stderr(): string;
  /** SIGTERM and wait for exit (idempotent). */
  stop(): Promise<void>;
}

export async function startGatewayChild(overrides: object): Promise<GatewayChild> {
  const proc = spawn(NODE, ['-r', './test/support/swc-register.js', 'test/support/gateway-child.ts'], {
    cwd: ROOT,
    env: { ...process.env, RADSCRIBE_TEST_OVERRIDES: JSON.stringify(overrides), RADSCRIBE_LOG_LEVEL: 'warn' },
  });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const rl = createInterface({ input: proc.stdout });
  const waiting: { prefix: string; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  rl.on('line', (l) => {
    const i = waiting.findIndex((w) => l.startsWith(w.prefix));
    if (i >= 0) waiting.splice(i, 1)[0]?.resolve(l);
  });
  proc.once('exit', (code, signal) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`gateway child exited (${code ?? signal}): ${err}`));
  });
  const line = (prefix: string): Promise<string> =>
    new Promise((resolve, reject) => {
      if (proc.exitCode !== null || proc.signalCode !== null) reject(new Error(`gateway child is gone: ${err}`));
      else waiting.push({ prefix, resolve, reject });
    });
  const ready = await line('READY ');
  return {
    proc,
    baseUrl: ready.split(' ')[1] as string,
    tokens: JSON.parse(ready.split(' ').slice(2).join(' ')) as RoleTokens,
    async ask<T>(cmd: string, arg?: string): Promise<T> {
      const answer = line(`${cmd} `);
      proc.stdin.write(`${cmd}${arg ? ` ${arg}` : ''}\n`);
      return JSON.parse((await answer).slice(cmd.length + 1)) as T;
    },
    stderr: () => err,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** POST parts (buffers) as one multipart/related STOW-RS request. */
export function stowBuffers(
  url: string,
  bodies: readonly Uint8Array[],
  /** An ingest token (GatewayChild.tokens.ingest). */
  token?: string,
): Promise<{ status: number; body: DicomJsonDataset }> {
  return new Promise((resolve, reject) => {
    const boundary = newBoundary();
    const parts = bodies.map((body) => ({ contentType: 'application/dicom', body }));
    void multipartBodyLength(parts, boundary).then((length) => {
      const req = http.request(url, {
        method: 'POST',
        headers: {
          'content-type': multipartRelatedContentType(boundary),
          'content-length': length,
          ...(token ? { authorization: `Bearer ${token}` } : {}),
        },
      });
      req.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          text += d;
        });
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as DicomJsonDataset });
          } catch {
            resolve({ status: res.statusCode ?? 0, body: {} });
          }
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      pipeline(multipartBody(parts, boundary), req).catch(reject);
    }, reject);
  });
}
