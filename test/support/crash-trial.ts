import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import dcmjs from 'dcmjs';
import pg from 'pg';
import { freePort } from '../../bench/support/free-port.js';
import { createServerDatabase } from '../../bench/support/server-database.js';
import { errorHandler } from '../../src/app.js';
import { openDatabase } from '../../src/db/pool.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { createStowRouter } from '../../src/pacs/stow-router.js';
import { PACKAGE_ROOT } from '../../src/runtime-paths.js';
import { startTestServer, type TestHttpServer } from './http.js';
import { RecordingSink } from './recording-sink.js';

/**
 * Crash trials (issue 9): the real gateway (`bin/radscribe serve`, compiled dist/) in a child
 * process on a fresh database and data directory, STOW-RS uploads of a few studies, `kill -9` at a
 * random moment (during start-up, ingest, the stability wait, inference or export), a restart on
 * the same database and storage, client re-sends of everything not acknowledged (what a modality
 * does after a connection reset), then the checks:
 *  - every instance acknowledged (in a 200/202 response's Referenced SOP Sequence) has its row in
 *    `instances` and its file on disk with the SHA-256 of the bytes sent;
 *  - each study ends with exactly one SR at the folder destination and one 'sent' ledger row, the
 *    same SOP instance;
 *  - `radscribe audit verify` exits 0; no job is left queued or running; every study is exported;
 *  - no spool (`*.part`) or destination temp (`*.tmp`) file is left behind, and the killed
 *    gateway's inference child did not outlive it.
 * Shared by test/integration/crash-trials.int.test.ts (a few trials) and bench/crash-trials.bench.ts
 * (≥ 100).
 */

// PACKAGE_ROOT, not __dirname: the bench runs this file compiled under dist/.
const ROOT = PACKAGE_ROOT;
const FIXTURES = [
  path.join(ROOT, 'test/fixtures/dicom/CT_small.dcm'),
  path.join(ROOT, 'test/fixtures/dicom/MR_small.dcm'),
];
/** bin/radscribe runs dist/src/cli.js with the project's Node 24. */
const BIN = path.join(ROOT, 'bin/radscribe');

/** Where the gateway was when it was killed, as seen from the client and the gateway's log. */
export const KillPhase = {
  Startup: 'startup',
  Ingest: 'ingest',
  Waiting: 'stability-wait',
  Inference: 'inference',
  Export: 'export',
  Done: 'after-done',
} as const;
export type KillPhase = (typeof KillPhase)[keyof typeof KillPhase];

/** How the kill moment is chosen: a uniform delay, or on an event plus a small random delay. */
export const KillTrigger = {
  Delay: 'delay',
  InstanceStored: 'instance-stored',
  JobClaimed: 'job-claimed',
  SrFileWritten: 'sr-file-written',
  /** STOW-RS destination only: the PACS stored the SR, the gateway dies before it reads the answer. */
  SrStoredAtPacs: 'sr-stored-at-pacs',
} as const;
export type KillTrigger = (typeof KillTrigger)[keyof typeof KillTrigger];

export interface CrashTrialOptions {
  readonly backend: 'postgresql' | 'pglite';
  /** Server URL (PostgreSQL); each trial gets a database of its own on it. */
  readonly databaseUrl?: string;
  readonly studies?: number;
  readonly instancesPerStudy?: number;
  readonly stabilityWindowMs?: number;
  /** Upper bound of the uniform kill delay, counted from the first spawn. */
  readonly maxKillDelayMs?: number;
  /** Trials without a kill (baseline) use KillTrigger undefined. */
  readonly trigger?: KillTrigger;
  readonly random?: () => number;
  /** Completion deadline after the restart. */
  readonly finishTimeoutMs?: number;
  /**
   * Where SRs go: a folder, or STOW-RS to a PACS on loopback (the gateway's own STOW router over a
   * file-backed sink that, like many PACS, refuses a known SOP Instance UID with other content:
   * Failure Reason 0x0111).
   */
  readonly destination?: 'folder' | 'stow-rs';
  /** Keep the trial's directory and database when a check fails. */
  readonly keepOnFailure?: boolean;
}

export interface CrashTrialResult {
  readonly trigger: KillTrigger | 'none';
  readonly killDelayMs: number | null;
  readonly phase: KillPhase | 'none';
  /** When the first run had finished everything (no kill before that), from the first spawn. */
  readonly firstRunDoneMs: number | null;
  /** PostgreSQL only: SR files (and temp files) at the destination and ledger rows right after the kill. */
  readonly atKill: { srFiles: number; srTempFiles: number; ledgerRows: number } | null;
  readonly sent: number;
  readonly acknowledged: number;
  readonly stored: number;
  /** Acknowledged but without row, without file, or with other bytes: must be empty. */
  readonly missing: string[];
  /** SR objects per study at the destination (files) and in the ledger ('sent' rows). */
  readonly srFilesPerStudy: number[];
  readonly ledgerRowsPerStudy: number[];
  /** SR files whose SOP Instance UID has no 'sent' ledger row for their study: must be 0. */
  readonly srUnrecorded: number;
  /** STOW-RS destination: SR requests the PACS received (re-sends included) and refused. */
  readonly pacsReceived: number;
  readonly pacsRefused: number;
  readonly auditVerify: { ok: boolean; output: string };
  readonly leftovers: { spool: number; outboxTmp: number; orphanFiles: number };
  readonly orphanChildren: number;
  readonly jobsLeft: number;
  readonly studiesNotExported: number;
  /** Each violated invariant, in words; empty = the trial passed. */
  readonly problems: string[];
  readonly durationMs: number;
  readonly where: string;
}

interface Instance {
  readonly study: string;
  readonly sop: string;
  readonly bytes: Uint8Array;
  readonly sha256: string;
}

function uid(): string {
  // 2.25 + a 128-bit integer (PS3.5 B.2): unique without an org root.
  return `2.25.${BigInt(`0x${randomBytes(16).toString('hex')}`).toString()}`;
}

/** Copies of the fixtures with fresh Study/Series/SOP Instance UIDs (dcmjs write, explicit meta). */
export function makeStudies(studies: number, perStudy: number): Instance[] {
  const out: Instance[] = [];
  for (let s = 0; s < studies; s++) {
    const study = uid();
    const series = uid();
    const src = readFileSync(FIXTURES[s % FIXTURES.length] as string);
    for (let i = 0; i < perStudy; i++) {
      const sop = uid();
      const dict = dcmjs.data.DicomMessage.readFile(src.buffer.slice(src.byteOffset, src.byteOffset + src.length));
      const set = (d: Record<string, { Value?: unknown[] }>, tag: string, v: string) => {
        const el = d[tag];
        if (el) el.Value = [v];
      };
      set(dict.dict, '0020000D', study);
      set(dict.dict, '0020000E', series);
      set(dict.dict, '00080018', sop);
      set(dict.meta, '00020003', sop);
      set(dict.dict, '00200013', String(i + 1));
      const bytes = new Uint8Array(dict.write() as ArrayBuffer);
      out.push({ study, sop, bytes, sha256: createHash('sha256').update(bytes).digest('hex') });
    }
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const debug = (s: string) => {
  if (process.env.RADSCRIBE_CRASH_DEBUG) process.stderr.write(`crash-trial ${new Date().toISOString()} ${s}\n`);
};

/**
 * The trial's configuration is all in its file: DATABASE_URL and RADSCRIBE_* variables (config keys
 * that would override it, or this harness's own knobs) are not passed on.
 */
function childEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(
    Object.entries(process.env).filter(([k]) => k !== 'DATABASE_URL' && !k.startsWith('RADSCRIBE_')),
  );
}

/** One gateway process and what its log said so far. */
class GatewayProcess {
  readonly child: ChildProcess;
  ready = false;
  readonly events = { stored: 0, claimed: 0, exported: 0, succeeded: 0 };
  stderrTail = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #listeners = new Set<(message: string) => void>();

  constructor(configFile: string) {
    this.child = spawn(BIN, ['serve', '--config', configFile], { env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('listening on')) this.ready = true;
    });
    let partial = '';
    this.child.stderr?.on('data', (b: Buffer) => {
      const text = partial + b.toString();
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        this.stderrTail = `${this.stderrTail}${line}\n`.slice(-8000);
        const m = /"message":"([^"]*)"/.exec(line)?.[1];
        if (!m) continue;
        if (m === 'instance stored') this.events.stored++;
        else if (m === 'job claimed') this.events.claimed++;
        else if (m === 'draft SR exported') this.events.exported++;
        else if (m === 'job succeeded') this.events.succeeded++;
        for (const l of this.#listeners) l(m);
      }
    });
  }

  onMessage(fn: (message: string) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.ready) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`gateway exited during start: ${this.stderrTail.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error('gateway did not start in time');
      await sleep(20);
    }
  }

  /** Direct children (the inference process), for the outlives-its-parent check. */
  children(): number[] {
    try {
      return execFileSync('pgrep', ['-P', String(this.child.pid)], { encoding: 'utf8' })
        .split('\n')
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  }

  kill9(): void {
    this.child.kill('SIGKILL');
  }

  async stop(timeoutMs = 60_000): Promise<boolean> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return true;
    this.child.kill('SIGTERM');
    const t = await Promise.race([this.exited.then(() => true), sleep(timeoutMs).then(() => false)]);
    if (!t) this.kill9();
    await this.exited;
    return t;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function files(dir: string, filter: (f: string) => boolean): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...files(p, filter));
    else if (filter(e.name)) out.push(p);
  }
  return out;
}

async function metrics(baseUrl: string, token: string): Promise<string | undefined> {
  try {
    const r = await fetch(`${baseUrl}/metrics`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5000),
    });
    return r.ok ? await r.text() : undefined;
  } catch {
    return undefined;
  }
}

function gauge(text: string, name: string, label: string): number {
  const re = new RegExp(`^${name}\\{[^}]*${label}[^}]*\\} (\\d+)$`, 'm');
  return Number(re.exec(text)?.[1] ?? 0);
}

/** Everything acknowledged, every study exported, no job pending. */
function finished(text: string, studies: number, instances: number): boolean {
  const jobsPending =
    gauge(text, 'radscribe_jobs', 'state="queued"') + gauge(text, 'radscribe_jobs', 'state="running"');
  const stored = [...text.matchAll(/^radscribe_instances\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
  return gauge(text, 'radscribe_studies', 'state="exported"') === studies && jobsPending === 0 && stored === instances;
}

let pgliteTemplate: string | undefined;
/**
 * A migrated, never-started PGlite data directory, made once per process and copied into each
 * trial: PGlite's initdb takes 10–20 s on a busy 2-core machine, which would be most of a trial.
 */
function freshPglite(into: string): void {
  if (!pgliteTemplate) {
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-crash-pglite-'));
    execFileSync(BIN, ['migrate'], {
      env: { ...childEnv(), RADSCRIBE_DATA_DIR: dir },
      stdio: 'ignore',
      timeout: 180_000,
    });
    pgliteTemplate = dir;
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  }
  cpSync(path.join(pgliteTemplate, 'pglite'), path.join(into, 'pglite'), { recursive: true });
}

export async function runCrashTrial(options: CrashTrialOptions): Promise<CrashTrialResult> {
  const started = Date.now();
  const random = options.random ?? Math.random;
  const studies = options.studies ?? 2;
  const perStudy = options.instancesPerStudy ?? 2;
  const dir = mkdtempSync(path.join(tmpdir(), 'rs-crash-'));
  const dataDir = path.join(dir, 'data');
  const outbox = path.join(dir, 'outbox');
  let dbUrl = '';
  let dropDb: (() => Promise<void>) | undefined;
  if (options.backend === 'postgresql') {
    const base = options.databaseUrl ?? process.env.DATABASE_URL;
    if (!base) throw new Error('crash trial on postgresql needs a database URL');
    const db = await createServerDatabase(base, 'radscribe_crash');
    dbUrl = db.url;
    dropDb = db.drop;
  }
  // The PACS: SRs it stored, by study; a hook fires after each store (before the response).
  let onPacsStore: (() => void) | undefined;
  const pacsSink = new RecordingSink(path.join(dir, 'pacs'));
  let pacs: TestHttpServer | undefined;
  if (options.destination === 'stow-rs') {
    mkdirSync(path.join(dir, 'pacs-tmp'), { recursive: true });
    const sink = {
      accept: async (...a: Parameters<RecordingSink['accept']>) => {
        const outcome = await pacsSink.accept(...a);
        onPacsStore?.();
        return outcome;
      },
    };
    pacs = await startTestServer((app) => {
      app.use(
        '/dicomweb',
        createStowRouter({
          sink,
          tmpDir: path.join(dir, 'pacs-tmp'),
          limits: { maxPartBytes: 64 * 1024 * 1024, maxRequestBytes: 256 * 1024 * 1024 },
        }),
      );
      app.use(errorHandler());
    });
  }
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const configFile = path.join(dir, 'radscribe.yaml');
  mkdirSync(dataDir, { recursive: true });
  if (options.backend === 'pglite') freshPglite(dataDir);
  writeFileSync(
    configFile,
    [
      `dataDir: ${JSON.stringify(dataDir)}`,
      'database:',
      `  url: ${JSON.stringify(dbUrl)}`,
      'http:',
      '  host: 127.0.0.1',
      `  port: ${port}`,
      'ingest:',
      `  stabilityWindowMs: ${options.stabilityWindowMs ?? 1000}`,
      'jobs:',
      '  pollIntervalMs: 100',
      ...(pacs
        ? [
            'remoteNodes:',
            '  - name: pacs',
            `    baseUrl: ${JSON.stringify(`${pacs.url}/dicomweb`)}`,
            '    auth:',
            '      type: none',
            '    poll:',
            '      enabled: false',
            'destinations:',
            '  - name: pacs-stow',
            '    type: stow-rs',
            '    node: pacs',
            // This PACS is a bare STOW-RS receiver without WADO-RS: the stored copy cannot be read
            // back, so it is compared only when the PACS says it already had it (sr-destination.ts).
            '    verifyStored: on-duplicate',
            'defaultDestination: pacs-stow',
          ]
        : [
            'destinations:',
            '  - name: outbox',
            '    type: folder',
            `    path: ${JSON.stringify(outbox)}`,
            'defaultDestination: outbox',
          ]),
      '',
    ].join('\n'),
  );

  // The gateway asks for a token (README "Access"): made with the CLI, as an operator would.
  const token = (role: string): string =>
    (
      JSON.parse(
        execFileSync(
          BIN,
          ['token', 'create', '--name', `crash trial ${role}`, '--role', role, '--json', '--config', configFile],
          {
            env: childEnv(),
            encoding: 'utf8',
            timeout: 120_000,
          },
        ),
      ) as { secret: string }
    ).secret;
  const ingestToken = token('ingest');
  const operatorToken = token('operator');
  const instances = makeStudies(studies, perStudy);
  const studyUids = [...new Set(instances.map((i) => i.study))];
  const acked = new Set<string>();
  const problems: string[] = [];
  const client = new DicomwebClient({
    baseUrl: `${baseUrl}/dicomweb`,
    timeoutMs: 60_000,
    auth: { type: 'bearer', token: ingestToken },
  });
  let inFlight = 0;

  /** One STOW-RS request per study, all studies at once; returns when each got an answer or failed. */
  const sendPending = async (gw: GatewayProcess) => {
    const pending = studyUids.map((s) => instances.filter((i) => i.study === s && !acked.has(i.sop)));
    await Promise.all(
      pending
        .filter((list) => list.length > 0)
        .map(async (list) => {
          inFlight++;
          try {
            const r = await client.storeInstances(
              list[0]?.study,
              list.map((i) => i.bytes),
            );
            debug(`STOW ${r.httpStatus}: ${r.referenced.length} referenced, ${r.failed.length} failed`);
            if (r.httpStatus === 200 || r.httpStatus === 202) for (const x of r.referenced) acked.add(x.sopInstanceUid);
          } catch (err: unknown) {
            debug(`STOW failed: ${String(err)}`);
            // A connection reset by the kill: nothing in this request counts as acknowledged.
          } finally {
            inFlight--;
          }
        }),
    );
    return gw;
  };

  const trigger = options.trigger;
  let killDelayMs: number | null = null;
  let phase: KillPhase | 'none' = 'none';
  let orphanChildren = 0;
  let orphanCheck: Promise<void> = Promise.resolve();
  let firstRunDoneMs: number | null = null;
  let atKill: CrashTrialResult['atKill'] = null;

  // Kill delays count from the first spawn, not from the set-up (database, template copy, PACS).
  const spawnedAt = Date.now();
  const first = new GatewayProcess(configFile);
  let second: GatewayProcess | undefined;
  try {
    const classify = (): KillPhase => {
      if (!first.ready) return KillPhase.Startup;
      if (inFlight > 0) return KillPhase.Ingest;
      const e = first.events;
      const srFiles = files(outbox, (f) => f.endsWith('.dcm') || f.endsWith('.tmp')).length + pacsSink.stored.size;
      if (e.claimed > e.succeeded) return srFiles > e.succeeded ? KillPhase.Export : KillPhase.Inference;
      return e.succeeded >= studies ? KillPhase.Done : KillPhase.Waiting;
    };
    let killed = false;
    const killNow = () => {
      if (killed) return;
      killed = true;
      killDelayMs = Date.now() - spawnedAt;
      phase = classify();
      const kids = first.children();
      first.kill9();
      orphanCheck = first.exited.then(async () => {
        // The inference process must notice its parent is gone (IPC disconnect) and exit.
        await sleep(3000);
        orphanChildren = kids.filter(alive).length;
        for (const k of kids) if (alive(k)) process.kill(k, 'SIGKILL');
      });
    };
    if (trigger === KillTrigger.Delay) {
      const t = setTimeout(killNow, random() * (options.maxKillDelayMs ?? 10_000));
      void first.exited.then(() => clearTimeout(t));
    } else if (trigger === KillTrigger.InstanceStored || trigger === KillTrigger.JobClaimed) {
      const want = trigger === KillTrigger.InstanceStored ? 'instance stored' : 'job claimed';
      // A job claim: within the next ~inference time, up to 2 s after the event (the tiny model takes
      // ~1.5 s an image). An instance commit: at once, so the kill lands inside its multi-part request;
      // a 30 ms spread let a fast request finish first (phase stability-wait, seen in CI).
      const spread = trigger === KillTrigger.InstanceStored ? 0 : 2000;
      const off = first.onMessage((m) => {
        if (m !== want) return;
        off();
        setTimeout(killNow, random() * spread);
      });
    } else if (trigger === KillTrigger.SrStoredAtPacs) {
      onPacsStore = () => {
        onPacsStore = undefined;
        killNow();
      };
    } else if (trigger === KillTrigger.SrFileWritten) {
      const poll = setInterval(() => {
        if (files(outbox, () => true).length > 0) {
          clearInterval(poll);
          killNow();
        }
      }, 2);
      void first.exited.then(() => clearInterval(poll));
    }

    const firstRun = (async () => {
      await first.waitReady(120_000);
      debug('first ready');
      await sendPending(first);
      // Without a kill: wait for the work to finish (then the kill, if any, lands after done).
      const deadline = Date.now() + (options.finishTimeoutMs ?? 120_000);
      while (!killed && Date.now() < deadline) {
        const m = await metrics(baseUrl, operatorToken);
        if (m && finished(m, studies, instances.length)) {
          firstRunDoneMs = Date.now() - spawnedAt;
          break;
        }
        await sleep(100);
      }
    })();
    await Promise.race([firstRun.catch((err: unknown) => debug(`first run: ${String(err)}`)), first.exited]);
    if (trigger && !killed) killNow();
    if (trigger) await first.exited;
    await firstRun.catch(() => undefined);
    debug('first exited');

    if (trigger && options.backend === 'postgresql') {
      // What the kill left: an SR at the destination that the ledger does not know yet is the
      // send-then-record window the export must survive (the SR UID is derived from its inputs).
      const c = new pg.Client({ connectionString: dbUrl });
      await c.connect();
      try {
        const n = await c.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM sr_exports WHERE state = 'sent' AND object_kind = 'sr'`,
        );
        atKill = {
          srFiles: files(outbox, (f) => f.endsWith('.dcm')).length + pacsSink.stored.size,
          srTempFiles: files(outbox, (f) => f.endsWith('.tmp')).length,
          ledgerRows: n.rows[0]?.n ?? 0,
        };
      } catch {
        // Killed before the migrations created the table.
        atKill = { srFiles: 0, srTempFiles: 0, ledgerRows: 0 };
      } finally {
        await c.end();
      }
    }

    let finishedOk = !trigger;
    if (trigger) {
      second = new GatewayProcess(configFile);
      await second.waitReady(120_000);
      debug('second ready');
      const deadline = Date.now() + (options.finishTimeoutMs ?? 120_000);
      // Re-send what was not acknowledged until it is (a modality's retry after a reset).
      while (acked.size < instances.length && Date.now() < deadline) {
        await sendPending(second);
        if (acked.size < instances.length) await sleep(200);
      }
      while (Date.now() < deadline) {
        const m = await metrics(baseUrl, operatorToken);
        if (m && finished(m, studies, instances.length)) {
          finishedOk = true;
          break;
        }
        await sleep(100);
      }
      if (!finishedOk) problems.push('did not finish after the restart (jobs or studies pending at the deadline)');
      if (!(await second.stop())) problems.push('gateway did not stop on SIGTERM within 60 s');
    } else if (!(await first.stop())) problems.push('gateway did not stop on SIGTERM within 60 s');
    await orphanCheck;
    debug('stopped; checking');

    // --- checks, on the stopped gateway's database and storage
    const db =
      options.backend === 'postgresql'
        ? {
            pool: new pg.Pool({ connectionString: dbUrl, max: 1 }),
            close: undefined as undefined | (() => Promise<void>),
          }
        : await openDatabase({ dataDir, poolSize: 1 }).then((d) => ({ pool: d.pool, close: () => d.close() }));
    let stored = 0;
    const missing: string[] = [];
    const srFilesPerStudy: number[] = [];
    const ledgerRowsPerStudy: number[] = [];
    let srUnrecorded = 0;
    let jobsLeft = 0;
    let studiesNotExported = 0;
    let orphanFiles = 0;
    try {
      const rows = (
        await db.pool.query<{ sop_instance_uid: string; file_path: string; file_sha256: string }>(
          'SELECT sop_instance_uid, file_path, file_sha256 FROM instances',
        )
      ).rows;
      stored = rows.length;
      const bySop = new Map(rows.map((r) => [r.sop_instance_uid, r]));
      for (const inst of instances) {
        if (!acked.has(inst.sop)) continue;
        const row = bySop.get(inst.sop);
        if (!row) missing.push(`${inst.sop}: no row`);
        else if (!existsSync(row.file_path)) missing.push(`${inst.sop}: no file`);
        else if (
          row.file_sha256 !== inst.sha256 ||
          createHash('sha256').update(readFileSync(row.file_path)).digest('hex') !== inst.sha256
        )
          missing.push(`${inst.sop}: other bytes`);
      }
      const known = new Set(rows.map((r) => r.file_path));
      orphanFiles = files(path.join(dataDir, 'instances'), (f) => f.endsWith('.dcm')).filter(
        (f) => !known.has(f),
      ).length;
      const ledger = (
        await db.pool.query<{ study_instance_uid: string; sop_instance_uid: string }>(
          `SELECT study_instance_uid, sop_instance_uid FROM sr_exports WHERE state = 'sent' AND object_kind = 'sr'`,
        )
      ).rows;
      for (const s of studyUids) {
        const sent = ledger.filter((r) => r.study_instance_uid === s).map((r) => r.sop_instance_uid);
        ledgerRowsPerStudy.push(sent.length);
        const srs = pacs
          ? [
              ...new Set(
                pacsSink.received
                  .filter((r) => r.outcome.status === 'stored' && r.outcome.identity.studyInstanceUid === s)
                  .map((r) => (r.outcome.status === 'stored' ? r.outcome.storedPath : '')),
              ),
            ]
          : files(path.join(outbox, s), (f) => f.endsWith('.dcm'));
        srFilesPerStudy.push(srs.length);
        // The file at the destination is the draft the ledger recorded, of this study.
        for (const f of srs) {
          const ds = parsePart10(readFileSync(f)).dataset;
          if (ds.StudyInstanceUID !== s || !sent.includes(ds.SOPInstanceUID as string)) srUnrecorded++;
        }
      }
      jobsLeft = (
        await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM jobs WHERE state IN ('queued', 'running')`)
      ).rows[0]?.n as number;
      studiesNotExported = (
        await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM studies WHERE state <> 'exported'`)
      ).rows[0]?.n as number;
    } finally {
      if (db.close) await db.close();
      else await (db.pool as pg.Pool).end();
    }
    const leftovers = {
      spool: files(path.join(dataDir, 'tmp'), (f) => f.endsWith('.part')).length,
      outboxTmp: files(outbox, (f) => f.endsWith('.tmp')).length,
      orphanFiles,
    };
    debug('db checked');
    const env = childEnv();
    let auditVerify: { ok: boolean; output: string };
    try {
      const out = execFileSync(BIN, ['audit', 'verify', '--config', configFile], {
        env,
        encoding: 'utf8',
        timeout: 120_000,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      auditVerify = { ok: /audit chain intact/.test(out), output: out.trim() };
    } catch (err: unknown) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      auditVerify = { ok: false, output: (e.stdout || e.stderr || e.message).trim().slice(0, 500) };
    }

    if (missing.length) problems.push(`acknowledged but not stored intact: ${missing.join('; ')}`);
    if (acked.size !== instances.length)
      problems.push(`${instances.length - acked.size} instance(s) never acknowledged`);
    if (srFilesPerStudy.some((n) => n !== 1)) problems.push(`SR files per study: ${srFilesPerStudy.join(',')}`);
    if (ledgerRowsPerStudy.some((n) => n !== 1))
      problems.push(`ledger rows per study: ${ledgerRowsPerStudy.join(',')}`);
    if (srUnrecorded) problems.push(`${srUnrecorded} SR file(s) at the destination without a matching ledger row`);
    if (!auditVerify.ok) problems.push(`audit verify failed: ${auditVerify.output}`);
    if (jobsLeft) problems.push(`${jobsLeft} job(s) left queued or running`);
    if (studiesNotExported) problems.push(`${studiesNotExported} study(ies) not exported`);
    if (leftovers.spool) problems.push(`${leftovers.spool} spool file(s) left in tmp/`);
    if (leftovers.outboxTmp) problems.push(`${leftovers.outboxTmp} temp file(s) left in the outbox`);
    if (orphanChildren) problems.push(`${orphanChildren} inference process(es) outlived the killed gateway`);
    if (problems.length && second) problems.push(`log tail after restart: ${second.stderrTail.slice(-1500)}`);

    const keep = problems.length > 0 && options.keepOnFailure !== false;
    if (!keep) {
      await dropDb?.();
      rmSync(dir, { recursive: true, force: true });
    }
    return {
      trigger: trigger ?? 'none',
      killDelayMs,
      phase,
      firstRunDoneMs,
      atKill,
      sent: instances.length,
      acknowledged: acked.size,
      stored,
      missing,
      srFilesPerStudy,
      ledgerRowsPerStudy,
      srUnrecorded,
      pacsReceived: pacsSink.received.length,
      pacsRefused: pacsSink.received.filter((r) => r.outcome.status === 'failed').length,
      auditVerify,
      leftovers,
      orphanChildren,
      jobsLeft,
      studiesNotExported,
      problems,
      durationMs: Date.now() - started,
      where: keep ? `${dir}${dbUrl ? ` ${dbUrl}` : ''}` : '',
    };
  } finally {
    await pacs?.close();
    for (const g of [first, second]) if (g && g.child.exitCode === null && g.child.signalCode === null) g.kill9();
  }
}

/** Trigger mix of the trials: half uniform delays, half aimed at ingest, inference and export. */
export function pickTrigger(random: () => number): KillTrigger {
  const r = random();
  if (r < 0.5) return KillTrigger.Delay;
  if (r < 0.65) return KillTrigger.InstanceStored;
  if (r < 0.8) return KillTrigger.JobClaimed;
  return KillTrigger.SrFileWritten;
}

/** Mulberry32: a seeded PRNG, so a failing trial sequence can be replayed (RADSCRIBE_CRASH_SEED). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A summary of many trials, as the bench prints it. */
export function summarise(results: readonly CrashTrialResult[]): Record<string, unknown> {
  const count = <T extends string | number>(xs: readonly T[]) => {
    const m: Record<string, number> = {};
    for (const x of xs) m[String(x)] = (m[String(x)] ?? 0) + 1;
    return m;
  };
  return {
    trials: results.length,
    passed: results.filter((r) => r.problems.length === 0).length,
    sent: results.reduce((a, r) => a + r.sent, 0),
    acknowledged: results.reduce((a, r) => a + r.acknowledged, 0),
    stored: results.reduce((a, r) => a + r.stored, 0),
    missing: results.reduce((a, r) => a + r.missing.length, 0),
    srFilesPerStudy: count(results.flatMap((r) => r.srFilesPerStudy)),
    ledgerRowsPerStudy: count(results.flatMap((r) => r.ledgerRowsPerStudy)),
    auditVerifyOk: results.filter((r) => r.auditVerify.ok).length,
    killPhase: count(results.map((r) => r.phase)),
    killTrigger: count(results.map((r) => r.trigger)),
    pacsSrRequests: results.reduce((a, r) => a + r.pacsReceived, 0),
    pacsRefusedAsDuplicate: results.reduce((a, r) => a + r.pacsRefused, 0),
    leftovers: {
      spool: results.reduce((a, r) => a + r.leftovers.spool, 0),
      outboxTmp: results.reduce((a, r) => a + r.leftovers.outboxTmp, 0),
      orphanInstanceFiles: results.reduce((a, r) => a + r.leftovers.orphanFiles, 0),
    },
    orphanInferenceProcesses: results.reduce((a, r) => a + r.orphanChildren, 0),
    // Kills that left an SR at the destination without its ledger row, or half-written (PostgreSQL).
    killedBetweenSendAndRecord: results.filter((r) => r.atKill && r.atKill.srFiles > r.atKill.ledgerRows).length,
    killedDuringSrWrite: results.filter((r) => r.atKill && r.atKill.srTempFiles > 0).length,
    meanTrialMs: Math.round(results.reduce((a, r) => a + r.durationMs, 0) / Math.max(1, results.length)),
  };
}
