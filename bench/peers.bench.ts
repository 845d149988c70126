import { type ChildProcess, execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import pg from 'pg';
import { parsePart10 } from '../src/dicom/dataset.js';
import { DicomwebClient } from '../src/pacs/dicomweb-client.js';
import { parseMediaType, wadoAcceptHeader } from '../src/pacs/media-type.js';
import { parseMultipart } from '../src/pacs/multipart.js';
import { discardHashing, spoolToTempFile } from '../src/pacs/temp-spool.js';
import { FIXTURES_DIR, PACKAGE_ROOT } from '../src/runtime-paths.js';
import { type OrthancHandle, orthancAvailable, startOrthanc } from '../test/support/orthanc.js';
import { freePort } from './support/free-port.js';
import { createServerDatabase } from './support/server-database.js';
import { spread, storeInstances, uidOfLength, withUids } from './support/stow-load.js';

/**
 * `npm run bench -- peers` (issue 11): RadScribe's receive and retrieve paths against real peers, side
 * by side in one run, on the same files at the same concurrency:
 *  1. C-STORE receive: one DCMTK storescu association (Explicit VR Little Endian proposed first, both
 *     SCPs accept it) into the gateway's DIMSE listener and into DCMTK storescp (warm, one process).
 *  2. STOW-RS ingest: the same multipart requests from one client in this process into the gateway
 *     and into Orthanc + orthanc-dicomweb.
 *  3. WADO-RS retrieval from Orthanc of one study: RadScribe's DicomwebClient (each part streamed to
 *     a temporary file, hashed) vs `curl -o` of the same URL with the same Accept header.
 *  4. Peak RSS (VmHWM, proc(5)) of the gateway process while it receives a `--size-mb` study (default
 *     1024) by STOW-RS and by C-STORE.
 *
 * Cost per instance is marginal: every round sends (or fetches) K and 2K fresh instances to each side
 * and counts (t(2K) − t(K)) / K, so process start-up, association set-up and connection set-up
 * cancel. Rounds interleave the sides (A B A B, who goes first alternating). Every transfer is
 * verified outside the timed part: count, and SHA-256 of what each side holds against what was sent
 * (for C-STORE the data set after the File Meta Information, which each SCP writes itself).
 *
 * The gateway is the real `bin/radscribe serve` (compiled dist/) in a child process, with a DIMSE
 * listener, on PostgreSQL (a fresh database on DATABASE_URL's server) or, with `--db pglite` or
 * without DATABASE_URL, the embedded PGlite; the stability window is an hour, so no inference runs.
 * Orthanc binds 0.0.0.0: the benchmark re-executes itself in a private network namespace
 * (`unshare --net`, loopback up, as test/run-tests.sh does) and skips Orthanc's parts where none can
 * be had.
 *
 * Options: --count K (default 60), --wado-count W (4K: WADO-RS studies of W and 2W instances),
 * --rounds R (5), --concurrency C (4 STOW-RS clients), --batch B (5 instances per STOW-RS request),
 * --size-mb S (1024; 0 skips part 4), --db pglite|postgresql (the gateway's database; default
 * postgresql where DATABASE_URL is set), --rss-db same|both (part 4 on --db's backend only, or on
 * PostgreSQL and PGlite: twice the time).
 */

const execFileP = promisify(execFile);
const TEMPLATE_FILE = path.join(FIXTURES_DIR, 'corpus', 'compressed', 'CTImage_explicit_le.dcm');
const BIN = path.join(PACKAGE_ROOT, 'bin', 'radscribe');
const GATEWAY_AE = 'RADSCRIBE';
const PEER_AE = 'STORESCP';
const SCU_AE = 'BENCHSCU';
/**
 * DCMTK 3.6.7 leaves Nagle's algorithm on unless TCP_NODELAY=1 is in its environment (dul): then each
 * C-STORE waits for a delayed ACK (~40 ms here, either receiver). RadScribe's sockets set no-delay
 * (src/dimse/association.ts), so the DCMTK tools get it too: otherwise the stall is what is measured.
 */
const DCMTK_ENV = { ...process.env, TCP_NODELAY: '1' };

interface Options {
  count: number;
  rounds: number;
  concurrency: number;
  batch: number;
  sizeMb: number;
  db: 'pglite' | 'postgresql';
  rssBothBackends: boolean;
  wadoCount: number;
}

function options(): Options {
  const args = process.argv.slice(2);
  const val = (name: string): string | undefined => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const num = (name: string, d: number): number => {
    const v = val(name);
    const n = v === undefined ? d : Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} must be a number ≥ 0`);
    return n;
  };
  const db = val('db') ?? (process.env.DATABASE_URL ? 'postgresql' : 'pglite');
  if (db !== 'pglite' && db !== 'postgresql') throw new Error('--db must be pglite or postgresql');
  if (db === 'postgresql' && !process.env.DATABASE_URL) throw new Error('--db postgresql needs DATABASE_URL');
  const count = Math.max(2, Math.round(num('count', 60)));
  return {
    count,
    rounds: Math.max(1, Math.round(num('rounds', 5))),
    concurrency: Math.max(1, Math.round(num('concurrency', 4))),
    batch: Math.max(1, Math.round(num('batch', 5))),
    sizeMb: num('size-mb', 1024),
    db,
    rssBothBackends: val('rss-db') === 'both',
    wadoCount: Math.max(2, Math.round(num('wado-count', 4 * count))),
  };
}

// ---- instances ----

interface Instance {
  readonly sop: string;
  readonly study: string;
  readonly series: string;
  readonly bytes: Buffer;
  /** SHA-256 of the whole file (STOW-RS and WADO-RS keep files whole). */
  readonly sha256: string;
  /** SHA-256 of the data set after the File Meta Information (what C-STORE carries). */
  readonly datasetSha256: string;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

/**
 * Offset of the data set in a Part 10 file: preamble, "DICM", then group 0002 in Explicit VR Little
 * Endian (PS3.10 §7.1), walked element by element rather than trusting (0002,0000).
 */
function datasetOffset(b: Uint8Array): number {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 132;
  while (o + 8 <= b.length && dv.getUint16(o, true) === 0x0002) {
    const vr = String.fromCharCode(b[o + 4] as number, b[o + 5] as number);
    if (['OB', 'OW', 'OF', 'SQ', 'UT', 'UN'].includes(vr)) o += 12 + dv.getUint32(o + 8, true);
    else o += 8 + dv.getUint16(o + 6, true);
  }
  return o;
}

const datasetHash = (b: Uint8Array): string => sha256(b.subarray(datasetOffset(b)));

class InstanceFactory {
  readonly template: Buffer;
  readonly #sop: string;
  readonly #study: string;
  readonly #series: string;
  constructor(file: string) {
    this.template = readFileSync(file);
    const ds = parsePart10(this.template).dataset as Record<string, string>;
    this.#sop = ds.SOPInstanceUID as string;
    this.#study = ds.StudyInstanceUID as string;
    this.#series = ds.SeriesInstanceUID as string;
  }
  /** `n` instances of one new study and series, each a new SOP Instance UID (same lengths). */
  study(n: number): Instance[] {
    const study = uidOfLength(this.#study.length);
    const series = uidOfLength(this.#series.length);
    return Array.from({ length: n }, () => {
      const sop = uidOfLength(this.#sop.length);
      const bytes = withUids(
        this.template,
        new Map([
          [this.#sop, sop],
          [this.#study, study],
          [this.#series, series],
        ]),
      );
      return { sop, study, series, bytes, sha256: sha256(bytes), datasetSha256: datasetHash(bytes) };
    });
  }
}

/** Write instances as files into a new directory (storescu sends a directory with +sd). */
function writeSet(root: string, name: string, set: readonly Instance[]): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  for (const i of set) writeFileSync(path.join(dir, `${i.sop}.dcm`), i.bytes);
  return dir;
}

// ---- processes ----

/** VmHWM and VmRSS of a process in bytes (proc(5)). */
function memoryOf(pid: number): { peak: number; rss: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { peak: kb('VmHWM') * 1024, rss: kb('VmRSS') * 1024 };
}

/** Reset VmHWM to the current resident set (`5` to /proc/<pid>/clear_refs, proc(5)). */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** The config file's child sees no DATABASE_URL or RADSCRIBE_* variables: the file is the truth. */
function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k !== 'DATABASE_URL' && !k.startsWith('RADSCRIBE_')),
  );
}

interface GatewayChild {
  readonly pid: number;
  readonly baseUrl: string;
  readonly dimsePort: number;
  readonly storageDir: string;
  readonly ingestToken: string;
  readonly backend: string;
  /** Rows in `instances` (PostgreSQL only; undefined on PGlite, whose database the gateway holds). */
  rowCount(): Promise<number | undefined>;
  stop(): Promise<void>;
}

async function startGatewayChild(root: string, db: Options['db']): Promise<GatewayChild> {
  const dataDir = path.join(root, 'gw-data');
  mkdirSync(dataDir, { recursive: true });
  let dbUrl = '';
  let drop: (() => Promise<void>) | undefined;
  if (db === 'postgresql') {
    const db = await createServerDatabase(process.env.DATABASE_URL as string, 'radscribe_peers');
    dbUrl = db.url;
    drop = db.drop;
  }
  const [httpPort, dimsePort] = [await freePort(), await freePort()];
  const configFile = path.join(root, 'radscribe.yaml');
  writeFileSync(
    configFile,
    [
      `dataDir: ${JSON.stringify(dataDir)}`,
      'database:',
      `  url: ${JSON.stringify(dbUrl)}`,
      'http:',
      '  host: 127.0.0.1',
      `  port: ${httpPort}`,
      // Ingest only: an hour's stability window keeps the describe pipeline (inference) out of it.
      'ingest:',
      '  stabilityWindowMs: 3600000',
      'dimse:',
      '  listeners:',
      `    - aeTitle: ${GATEWAY_AE}`,
      '      host: 127.0.0.1',
      `      port: ${dimsePort}`,
      'destinations:',
      '  - name: outbox',
      '    type: folder',
      `    path: ${JSON.stringify(path.join(root, 'outbox'))}`,
      'defaultDestination: outbox',
      '',
    ].join('\n'),
  );
  // The gateway asks for a token (README "Access"): made with the CLI, as an operator would, before
  // serve (PGlite is one process's).
  const { stdout } = await execFileP(
    BIN,
    ['token', 'create', '--name', 'peers bench', '--role', 'ingest', '--json', '--config', configFile],
    { env: childEnv(), timeout: 180_000 },
  );
  const ingestToken = (JSON.parse(stdout) as { secret: string }).secret;
  const logFd = openSync(path.join(root, 'gateway.log'), 'a');
  const child: ChildProcess = spawn(BIN, ['serve', '--config', configFile], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', logFd],
  });
  closeSync(logFd);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('gateway did not start in 180 s')), 180_000);
    createInterface({ input: child.stdout as Readable }).on('line', (l) => {
      if (l.includes('listening on')) {
        clearTimeout(t);
        resolve();
      }
    });
    void exited.then(() => {
      clearTimeout(t);
      reject(new Error(`gateway exited during start (log: ${path.join(root, 'gateway.log')})`));
    });
  });
  const pool = dbUrl ? new pg.Pool({ connectionString: dbUrl, max: 1 }) : undefined;
  return {
    pid: child.pid as number,
    baseUrl: `http://127.0.0.1:${httpPort}`,
    dimsePort,
    storageDir: path.join(dataDir, 'instances'),
    ingestToken,
    backend: db === 'postgresql' ? 'PostgreSQL' : 'PGlite (embedded)',
    async rowCount() {
      if (!pool) return undefined;
      const r = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM instances');
      return r.rows[0]?.n;
    },
    async stop() {
      await pool?.end();
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(t);
      }
      await drop?.();
    },
  };
}

interface StorescpChild {
  readonly pid: number;
  readonly port: number;
  readonly dir: string;
  stop(): Promise<void>;
}

async function startStorescp(dir: string): Promise<StorescpChild> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // Defaults otherwise: prefer Explicit VR Little Endian, write the file format with the received
  // transfer syntax, one file per instance named after its SOP Instance UID; no fsync (there is no
  // option for one in storescp 3.6.7).
  const child = spawn('storescp', ['-aet', PEER_AE, '-od', dir, String(port)], { stdio: 'ignore', env: DCMTK_ENV });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (spawnSync('echoscu', ['-aec', PEER_AE, '127.0.0.1', String(port)]).status === 0) break;
    if (child.exitCode !== null || Date.now() > deadline) throw new Error('storescp did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    pid: child.pid as number,
    port,
    dir,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** One storescu association carrying every file of `dir`; resolves with its wall time (ms). */
async function storescu(aec: string, port: number, dir: string): Promise<number> {
  const t = performance.now();
  // -xe: propose the uncompressed syntaxes, Explicit VR Little Endian first (the files' own);
  // -R: only the presentation contexts the files need, as a modality does.
  await execFileP('storescu', ['-aet', SCU_AE, '-aec', aec, '-xe', '-R', '+sd', '127.0.0.1', String(port), dir], {
    timeout: 600_000,
    env: DCMTK_ENV,
  });
  return performance.now() - t;
}

// ---- verification (outside the timed parts) ----

/** What a receiver holds for each SOP Instance UID sent: the hash to compare, or undefined. */
type Holdings = (i: Instance) => string | undefined;

function verify(what: string, sent: readonly Instance[], key: 'sha256' | 'datasetSha256', held: Holdings): void {
  const bad = sent.filter((i) => held(i) !== i[key]);
  if (bad.length > 0) throw new Error(`${what}: ${bad.length} of ${sent.length} instances missing or altered`);
}

function gatewayFile(gw: GatewayChild, i: Instance): string {
  return path.join(gw.storageDir, i.study, i.series, `${i.sop}.dcm`);
}

const fileHash = (p: string, dataset: boolean): string | undefined => {
  if (!existsSync(p)) return undefined;
  const b = readFileSync(p);
  return dataset ? datasetHash(b) : sha256(b);
};

/** storescp names files <modality>.<SOP Instance UID> (its -uf default). */
function storescpFiles(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const f of readdirSync(dir)) out.set(f.replace(/^[A-Z]{2}\./, ''), path.join(dir, f));
  return out;
}

// ---- STOW-RS client (the same for both receivers) ----

/** Send `set` in requests of `batch` instances from `concurrency` clients; returns wall ms. */
async function stow(
  base: string,
  headers: Record<string, string>,
  set: readonly Instance[],
  batch: number,
  concurrency: number,
): Promise<number> {
  const requests: Instance[][] = [];
  for (let i = 0; i < set.length; i += batch) requests.push(set.slice(i, i + batch));
  let next = 0;
  const referenced = new Set<string>();
  const problems: string[] = [];
  const t = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let r = next++; r < requests.length; r = next++) {
        const files = requests[r] as Instance[];
        const a = await storeInstances(
          base,
          files.map((f) => f.bytes),
          600_000,
          headers,
        );
        if (a.status !== 200) problems.push(`${a.status}${a.networkError ? ` ${a.networkError}` : ''}`);
        for (const u of a.referenced) referenced.add(u);
      }
    }),
  );
  const ms = performance.now() - t;
  const missing = set.filter((i) => !referenced.has(i.sop)).length;
  if (problems.length > 0 || missing > 0)
    throw new Error(`STOW-RS to ${base}: ${missing} not acknowledged; statuses ${problems.slice(0, 3).join(', ')}`);
  return ms;
}

// ---- the table ----

interface Row {
  readonly path: string;
  readonly ours: readonly number[];
  readonly peerName: string;
  readonly peer: readonly number[];
  /** Goal on ours/peer throughput (= peer time / our time). */
  readonly goal: number;
}

const f2 = (x: number) => (x >= 10 ? x.toFixed(1) : x.toFixed(2));
const spreadText = (xs: readonly number[]) => {
  const s = spread(xs);
  return `${f2(s.median)} (${f2(s.min)}–${f2(s.max)})`;
};

function table(rows: readonly Row[]): string {
  const out = [
    '| path | RadScribe ms/instance median (min–max) | peer | peer ms/instance median (min–max) | ratio (peer time / ours) | goal | met? |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const ratio = spread(r.peer).median / spread(r.ours).median;
    out.push(
      `| ${r.path} | ${spreadText(r.ours)} | ${r.peerName} | ${spreadText(r.peer)} | ${ratio.toFixed(2)}× | ≥ ${r.goal.toFixed(1)}× | ${ratio >= r.goal ? 'yes' : 'no'} |`,
    );
  }
  return out.join('\n');
}

const log = (s: string) => process.stdout.write(`${s}\n`);

/** Re-run this benchmark in a private network namespace (Orthanc binds 0.0.0.0); false if none. */
function reexecInNetns(): boolean {
  if (process.env.RADSCRIBE_IN_NETNS === '1' || process.env.RADSCRIBE_NO_NETNS === '1') return false;
  const script = 'ip link set lo up && exec "$0" "$@"';
  const args = process.argv.slice(2);
  const passOn = args.filter((a, i) => a.startsWith('--') || args[i - 1]?.startsWith('--'));
  const cmd = [process.execPath, process.argv[1] as string, 'peers', ...passOn];
  for (const prefix of [['--net'], ['--map-root-user', '--net']]) {
    if (spawnSync('unshare', [...prefix, 'true']).status !== 0) continue;
    const r = spawnSync('unshare', [...prefix, '--', 'sh', '-c', script, ...cmd], {
      stdio: 'inherit',
      env: { ...process.env, RADSCRIBE_IN_NETNS: '1' },
    });
    process.exitCode = r.status ?? 1;
    return true;
  }
  return false;
}

export async function run(): Promise<void> {
  if (reexecInNetns()) return;
  const o = options();
  const orthanc = orthancAvailable();
  const root = mkdtempSync(path.join(tmpdir(), 'rs-peers-bench-'));
  const factory = new InstanceFactory(TEMPLATE_FILE);
  const kb = (factory.template.length / 1024).toFixed(0);
  log(
    `template ${path.relative(PACKAGE_ROOT, TEMPLATE_FILE)} (${kb} KiB, CT 512×512, Explicit VR LE); K = ${o.count}, ` +
      `${o.rounds} rounds of K and 2K instances per side, marginal cost (t(2K) − t(K)) / K; ` +
      `STOW-RS ${o.concurrency} clients × ${o.batch} instances per request; WADO-RS studies of ${o.wadoCount} and ${2 * o.wadoCount}`,
  );
  if (!orthanc.ok) {
    const why =
      process.env.RADSCRIBE_IN_NETNS === '1' ? orthanc.reason : 'no private network namespace (unshare --net failed)';
    log(`Orthanc parts (STOW-RS, WADO-RS) skipped: ${why}; Orthanc binds 0.0.0.0 and runs only inside one`);
  }
  const rows: Row[] = [];
  const notes: string[] = [];
  let gw: GatewayChild | undefined;
  let scp: StorescpChild | undefined;
  let pacs: OrthancHandle | undefined;
  try {
    gw = await startGatewayChild(path.join(root, 'gw-main'), o.db);
    log(`gateway: bin/radscribe serve, pid ${gw.pid}, ${gw.backend}, log level info (default)`);
    scp = await startStorescp(path.join(root, 'storescp'));
    const gwAuth = { authorization: `Bearer ${gw.ingestToken}` };
    const gwStow = `${gw.baseUrl}/dicomweb`;
    let sentToGateway = 0;

    // 1. C-STORE receive.
    const cs = { ours: [] as number[], peer: [] as number[], peerSync: [] as number[] };
    for (let r = 0; r < o.rounds; r++) {
      const sets = [factory.study(o.count), factory.study(2 * o.count)];
      const dirs = sets.map((s, i) => writeSet(root, `cstore-${r}-${i}`, s));
      const t = { ours: [0, 0], peer: [0, 0], sync: [0, 0] };
      for (const i of [0, 1]) {
        const dir = dirs[i] as string;
        const set = sets[i] as Instance[];
        const sides = r % 2 === 0 ? ['ours', 'peer'] : ['peer', 'ours'];
        for (const side of sides) {
          if (side === 'ours') {
            t.ours[i] = await storescu(GATEWAY_AE, gw.dimsePort, dir);
            sentToGateway += set.length;
            const g = gw;
            verify('C-STORE into RadScribe', set, 'datasetSha256', (x) => fileHash(gatewayFile(g, x), true));
          } else {
            t.peer[i] = await storescu(PEER_AE, scp.port, dir);
            const held = storescpFiles(scp.dir);
            verify('C-STORE into storescp', set, 'datasetSha256', (x) => {
              const p = held.get(x.sop);
              return p ? fileHash(p, true) : undefined;
            });
            // The same files made durable: coreutils `sync FILE…` fsyncs each one (one process).
            const s0 = performance.now();
            execFileSync('sync', [...held.values()]);
            t.sync[i] = performance.now() - s0;
            rmSync(scp.dir, { recursive: true, force: true });
            mkdirSync(scp.dir);
          }
        }
      }
      cs.ours.push(((t.ours[1] as number) - (t.ours[0] as number)) / o.count);
      cs.peer.push(((t.peer[1] as number) - (t.peer[0] as number)) / o.count);
      cs.peerSync.push(
        ((t.peer[1] as number) + (t.sync[1] as number) - (t.peer[0] as number) - (t.sync[0] as number)) / o.count,
      );
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
    rows.push({ path: 'C-STORE receive', ours: cs.ours, peerName: 'DCMTK storescp', peer: cs.peer, goal: 1 });
    rows.push({
      path: 'C-STORE receive',
      ours: cs.ours,
      peerName: 'storescp + fsync each file after (sync FILE…)',
      peer: cs.peerSync,
      goal: 1,
    });
    notes.push(
      'C-STORE: RadScribe answers each C-STORE-RSP after the file is fsynced and renamed (directory fsynced) and its ' +
        'row and audit event are committed; storescp 3.6.7 has no fsync option and writes into the page cache, so a ' +
        'second row adds `sync FILE…` (fsync of every received file, one process) to its time. storescu and ' +
        'storescp run with TCP_NODELAY=1 (DCMTK keeps Nagle on otherwise; RadScribe sets no-delay).',
    );

    // 2. STOW-RS ingest.
    if (orthanc.ok) {
      pacs = await startOrthanc();
      const pacsAuth = {
        authorization: `Basic ${Buffer.from(`${pacs.auth.username}:${pacs.auth.password}`).toString('base64')}`,
      };
      const pacsClient = new DicomwebClient({
        baseUrl: pacs.baseUrl,
        auth: { type: 'basic', ...pacs.auth },
        timeoutMs: 120_000,
      });
      /** Orthanc's copy of a study, by SOP Instance UID → SHA-256 of the part (untimed check). */
      const orthancHolds = async (study: string): Promise<Map<string, string>> => {
        const out = new Map<string, string>();
        await pacsClient.retrieveStudy(study, {
          transferSyntax: '*',
          onInstance: async (body) => {
            const chunks: Buffer[] = [];
            for await (const c of body) chunks.push(c as Buffer);
            const b = Buffer.concat(chunks);
            out.set(
              (parsePart10(b, { untilPixelData: true }).dataset as { SOPInstanceUID: string }).SOPInstanceUID,
              sha256(b),
            );
          },
        });
        return out;
      };
      const st = { ours: [] as number[], peer: [] as number[] };
      for (let r = 0; r < o.rounds; r++) {
        const sets = [factory.study(o.count), factory.study(2 * o.count)];
        const t = { ours: [0, 0], peer: [0, 0] };
        for (const i of [0, 1]) {
          const set = sets[i] as Instance[];
          for (const side of r % 2 === 0 ? ['ours', 'peer'] : ['peer', 'ours']) {
            if (side === 'ours') {
              t.ours[i] = await stow(gwStow, gwAuth, set, o.batch, o.concurrency);
              sentToGateway += set.length;
              const g = gw;
              verify('STOW-RS into RadScribe', set, 'sha256', (x) => fileHash(gatewayFile(g, x), false));
            } else {
              t.peer[i] = await stow(pacs.baseUrl, pacsAuth, set, o.batch, o.concurrency);
              const held = await orthancHolds(set[0]?.study as string);
              verify('STOW-RS into Orthanc', set, 'sha256', (x) => held.get(x.sop));
            }
          }
        }
        st.ours.push(((t.ours[1] as number) - (t.ours[0] as number)) / o.count);
        st.peer.push(((t.peer[1] as number) - (t.peer[0] as number)) / o.count);
      }
      rows.push({ path: 'STOW-RS ingest', ours: st.ours, peerName: 'Orthanc + DICOMweb', peer: st.peer, goal: 1.5 });
      notes.push(
        'STOW-RS: one Node fetch client in the benchmark process for both (bench/support/stow-load.ts), the same ' +
          'requests; Orthanc runs with its defaults (SQLite index, files in its storage directory).',
      );

      // 3. WADO-RS retrieval from Orthanc: two studies of K and 2K instances, loaded once.
      // Retrieval is cheap per instance: bigger studies keep curl's start-up jitter below the signal.
      const wk = o.wadoCount;
      const studies = [factory.study(wk), factory.study(2 * wk)];
      for (const s of studies) await stow(pacs.baseUrl, pacsAuth, s, o.batch, o.concurrency);
      const accept = wadoAcceptHeader({ transferSyntax: '*' });
      const wado = { ours: [] as number[], parse: [] as number[], peer: [] as number[] };
      // This process's CPU time (user + system) on the two client sides: steadier than wall time
      // on a shared machine, and what the client itself costs (Orthanc and curl run elsewhere).
      const wadoCpu = { ours: [] as number[], parse: [] as number[] };
      const cpuMs = (since: NodeJS.CpuUsage): number => {
        const c = process.cpuUsage(since);
        return (c.user + c.system) / 1000;
      };
      const sides = ['ours', 'parse', 'peer'];
      for (let r = 0; r < o.rounds; r++) {
        const t = { ours: [0, 0], parse: [0, 0], peer: [0, 0] };
        const cpu = { ours: [0, 0], parse: [0, 0] };
        for (const i of [0, 1]) {
          const set = studies[i] as Instance[];
          const study = set[0]?.study as string;
          const dir = path.join(root, `wado-${r}-${i}`);
          mkdirSync(dir);
          // Three sides, who goes first rotating.
          for (const side of [...sides.slice(r % 3), ...sides.slice(0, r % 3)]) {
            if (side === 'parse') {
              // Diagnostic: the client's multipart parsing alone, each part hashed and dropped.
              const hashes = new Set<string>();
              const c0 = process.cpuUsage();
              const t0 = performance.now();
              await pacsClient.retrieveStudy(study, {
                transferSyntax: '*',
                onInstance: async (body) => {
                  hashes.add((await discardHashing(body)).sha256);
                },
              });
              t.parse[i] = performance.now() - t0;
              cpu.parse[i] = cpuMs(c0);
              verify('WADO-RS by DicomwebClient (discard)', set, 'sha256', (x) =>
                hashes.has(x.sha256) ? x.sha256 : undefined,
              );
            } else if (side === 'ours') {
              const got = new Map<string, string>();
              const c0 = process.cpuUsage();
              const t0 = performance.now();
              await pacsClient.retrieveStudy(study, {
                transferSyntax: '*',
                onInstance: async (body) => {
                  const f = await spoolToTempFile(body, dir, 'wado');
                  got.set(f.path, f.sha256);
                },
              });
              t.ours[i] = performance.now() - t0;
              cpu.ours[i] = cpuMs(c0);
              const hashes = new Set(got.values());
              verify('WADO-RS by DicomwebClient', set, 'sha256', (x) => (hashes.has(x.sha256) ? x.sha256 : undefined));
              if (got.size !== set.length) throw new Error(`DicomwebClient got ${got.size} parts, not ${set.length}`);
            } else {
              const out = path.join(dir, 'curl.multipart');
              const t0 = performance.now();
              await execFileP('curl', [
                '-sS',
                '--fail',
                '-o',
                out,
                '-D',
                `${out}.headers`,
                '-u',
                `${pacs.auth.username}:${pacs.auth.password}`,
                '-H',
                `Accept: ${accept}`,
                '-H',
                'Accept-Encoding: identity',
                `${pacs.baseUrl}/studies/${study}`,
              ]);
              t.peer[i] = performance.now() - t0;
              const hashes = new Set<string>();
              let parts = 0;
              const ct = /^content-type:\s*(.+)$/im.exec(readFileSync(`${out}.headers`, 'latin1'))?.[1]?.trim() ?? '';
              const boundary = parseMediaType(ct).params.boundary ?? '';
              for await (const part of parseMultipart(createReadStream(out), boundary)) {
                const chunks: Buffer[] = [];
                for await (const c of part.body) chunks.push(c as Buffer);
                hashes.add(sha256(Buffer.concat(chunks)));
                parts++;
              }
              verify('WADO-RS by curl', set, 'sha256', (x) => (hashes.has(x.sha256) ? x.sha256 : undefined));
              if (parts !== set.length) throw new Error(`curl got ${parts} parts, not ${set.length}`);
            }
          }
          rmSync(dir, { recursive: true, force: true });
        }
        wado.ours.push(((t.ours[1] as number) - (t.ours[0] as number)) / wk);
        wado.parse.push(((t.parse[1] as number) - (t.parse[0] as number)) / wk);
        wado.peer.push(((t.peer[1] as number) - (t.peer[0] as number)) / wk);
        wadoCpu.ours.push(((cpu.ours[1] as number) - (cpu.ours[0] as number)) / wk);
        wadoCpu.parse.push(((cpu.parse[1] as number) - (cpu.parse[0] as number)) / wk);
      }
      rows.push({
        path: 'WADO-RS retrieve (from Orthanc)',
        ours: wado.ours,
        peerName: 'curl -o (same URL, Accept)',
        peer: wado.peer,
        goal: 0.9,
      });
      rows.push({
        path: 'WADO-RS, diagnostic: client parsing only (parts hashed, not written)',
        ours: wado.parse,
        peerName: 'curl -o (same URL, Accept)',
        peer: wado.peer,
        goal: 0.9,
      });
      notes.push(
        'WADO-RS: DicomwebClient.retrieveStudy (transfer-syntax=*) parses the multipart body and streams each part ' +
          'into its own temporary file with SHA-256 (spoolToTempFile, as study retrieval does); curl writes the ' +
          'whole body to one file; parts are checked afterwards, untimed. Neither fsyncs.',
      );
      notes.push(
        `WADO-RS client CPU (this process, user + system), marginal ms/instance median (min–max): retrieve ${spreadText(
          wadoCpu.ours,
        )}, parsing only ${spreadText(wadoCpu.parse)}.`,
      );
    }

    log('');
    log(table(rows));
    log('');
    for (const n of notes) log(`- ${n}`);

    const rowsHeld = await gw.rowCount();
    log(
      `\nverified: every instance sent (${sentToGateway} to RadScribe) held intact by each receiver (SHA-256 of the ` +
        `file, or of the data set for C-STORE)${rowsHeld === undefined ? '' : `; gateway instances rows: ${rowsHeld}`}`,
    );
    if (rowsHeld !== undefined && rowsHeld !== sentToGateway)
      throw new Error(`gateway has ${rowsHeld} instance rows, ${sentToGateway} were sent`);
    await pacs?.stop();
    await scp.stop();
    await gw.stop();
    gw = undefined;

    // 4. Peak RSS of a fresh gateway process receiving one large study, per path.
    if (o.sizeMb > 0) {
      const n = Math.ceil((o.sizeMb * 1024 * 1024) / factory.template.length);
      const bytes = n * factory.template.length;
      const st = statfsSync(root);
      const free = st.bavail * st.bsize;
      // The source files and the gateway's copy (one path at a time, deleted after), 2 GB to spare.
      const need = 2 * bytes + 2 * 1024 ** 3;
      if (free < need) {
        log(`\npeak RSS skipped: ${(free / 1e9).toFixed(1)} GB free, ${(need / 1e9).toFixed(1)} GB needed`);
      } else {
        log('');
        log(
          `| path (fresh gateway process, one study of ${n} instances, ${(bytes / 1024 ** 2).toFixed(0)} MiB) | RSS idle before | peak RSS while receiving (VmHWM) | wall | goal | met? |`,
        );
        log('|---|---|---|---|---|---|');
        const mb = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;
        // --rss-db both: also the embedded PGlite, which lives in the gateway's memory.
        const backends: Options['db'][] =
          o.rssBothBackends && o.db === 'postgresql' ? ['postgresql', 'pglite'] : [o.db];
        for (const [db, via] of backends.flatMap((b) =>
          (['STOW-RS', 'C-STORE'] as const).map((v) => [b, v] as const),
        )) {
          const big = await startGatewayChild(path.join(root, `gw-${via}`), db);
          try {
            const set = factory.study(n);
            const dir = via === 'C-STORE' ? writeSet(root, 'large', set) : undefined;
            // Let start-up settle (migrations, first timers) before the window opens.
            await new Promise((r) => setTimeout(r, 2000));
            const before = memoryOf(big.pid).rss;
            resetPeak(big.pid);
            const t0 = performance.now();
            if (dir === undefined)
              await stow(
                `${big.baseUrl}/dicomweb`,
                { authorization: `Bearer ${big.ingestToken}` },
                set,
                o.batch,
                o.concurrency,
              );
            else await storescu(GATEWAY_AE, big.dimsePort, dir);
            const wall = performance.now() - t0;
            const peak = memoryOf(big.pid).peak;
            verify(`${via} ${n} instances into RadScribe`, set, dir === undefined ? 'sha256' : 'datasetSha256', (x) =>
              fileHash(gatewayFile(big, x), dir !== undefined),
            );
            const held = await big.rowCount();
            if (held !== undefined && held !== n) throw new Error(`${via}: ${held} instance rows, ${n} sent`);
            if (dir) rmSync(dir, { recursive: true, force: true });
            log(
              `| ${via} into RadScribe (${big.backend}) | ${mb(before)} | ${mb(peak)} | ${(wall / 1000).toFixed(1)} s (${(bytes / 1024 ** 2 / (wall / 1000)).toFixed(0)} MiB/s) | ≤ 300 MiB | ${peak <= 300 * 1024 ** 2 ? 'yes' : 'no'} |`,
            );
          } finally {
            await big.stop();
            rmSync(path.join(root, `gw-${via}`), { recursive: true, force: true });
          }
        }
        log(
          '\n(VmHWM of the gateway process alone, reset (/proc/<pid>/clear_refs 5) once it was idle; every instance ' +
            'verified by SHA-256 afterwards.)',
        );
      }
    }
  } finally {
    await pacs?.stop();
    await scp?.stop();
    await gw?.stop();
    rmSync(root, { recursive: true, force: true });
  }
}
