import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../bench/support/free-port.js';

/**
 * DCMTK dcmqrscp (3.6.7) as a second Query/Retrieve SCP peer: a storage area it fills from C-STORE
 * (storescu), answers C-FIND and C-MOVE on the Study Root model. `moveDestinations` are the AE
 * titles it may C-MOVE to (its HostTable); any other destination is A801.
 */
const run = promisify(execFile);

export interface DcmqrscpHandle {
  readonly port: number;
  readonly aet: string;
  /** Its verbose log so far. */
  log(): string;
  /** C-STORE files into its storage area with DCMTK storescu. */
  store(files: readonly string[]): Promise<void>;
  stop(): Promise<void>;
}

export async function startDcmqrscp(
  opts: { moveDestinations?: Readonly<Record<string, { host: string; port: number }>>; maxPdu?: number } = {},
): Promise<DcmqrscpHandle> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'dcmqrscp-'));
  const db = path.join(dir, 'db');
  await mkdir(db);
  const port = await freePort();
  const aet = 'QRSCP';
  const hosts = Object.entries(opts.moveDestinations ?? {})
    .map(([ae, h], i) => `dest${i} = (${ae}, ${h.host}, ${h.port})`)
    .join('\n');
  const cfg = `NetworkTCPPort = ${port}
MaxPDUSize = ${opts.maxPdu ?? 16384}
MaxAssociations = 16

HostTable BEGIN
${hosts}
HostTable END

VendorTable BEGIN
VendorTable END

AETable BEGIN
${aet} ${db} RW (1000, 1024mb) ANY
AETable END
`;
  const cfgPath = path.join(dir, 'dcmqrscp.cfg');
  await writeFile(cfgPath, cfg);
  // Forking mode: 3.6.7 --single-process segfaults after the first association is released. -v for
  // the log the tests read (the children write to the same pipes); +xv/-xv: the fixture is
  // JPEG 2000 Lossless, kept as is both ways (dcmqrscp has no J2K codec to convert it).
  const proc: ChildProcess = spawn('stdbuf', ['-oL', '-eL', 'dcmqrscp', '-v', '+xv', '-xv', '-c', cfgPath], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const onData = (d: Buffer): void => {
    log = (log + d.toString()).slice(-200_000);
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`dcmqrscp exited ${proc.exitCode}: ${log}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`dcmqrscp did not listen: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    aet,
    log: () => log,
    store: async (files) => {
      // In batches: the argument list stays short.
      for (let i = 0; i < files.length; i += 50)
        await run(
          'storescu',
          ['-xv', '-aet', 'LOADER', '-aec', aet, '127.0.0.1', String(port), ...files.slice(i, i + 50)],
          {
            timeout: 120_000,
          },
        );
    },
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Copies of `file` as `count` new studies (dcmodify: new Study, Series and SOP Instance UIDs each),
 * with the given StudyDate, in `dir`. Returns their paths.
 */
export async function copiesAsNewStudies(
  file: string,
  dir: string,
  count: number,
  modify: readonly string[] = [],
): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const p = path.join(dir, `copy-${i}.dcm`);
    await run('cp', [file, p]);
    await run('dcmodify', ['-nb', '-gst', '-gse', '-gin', ...modify, p]);
    out.push(p);
  }
  return out;
}
