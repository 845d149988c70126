import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../../bench/support/free-port.js';

/**
 * A real Orthanc 1.10 + orthanc-dicomweb as the test PACS. Orthanc 1.10 always binds 0.0.0.0 and has
 * no bind-address option (js-stack.md §5), so it runs only inside the private network namespace that
 * test/run-tests.sh creates (`unshare --net`, RADSCRIBE_IN_NETNS=1); startOrthanc refuses otherwise.
 */
export const ORTHANC_BINARY = '/usr/sbin/Orthanc';
export const ORTHANC_DICOMWEB_PLUGIN = '/usr/share/orthanc/plugins/libOrthancDicomWeb.so';

export interface OrthancHandle {
  /** DICOMweb root, http://127.0.0.1:PORT/dicom-web */
  readonly baseUrl: string;
  /** Orthanc REST root, http://127.0.0.1:PORT */
  readonly restUrl: string;
  readonly dicomPort: number;
  readonly aet: string;
  readonly auth: { readonly username: string; readonly password: string };
  stop(): Promise<void>;
}

/** HTTP Basic credentials of the Orthanc the handle names. */
export function orthancAuthHeader(o: OrthancHandle): string {
  return `Basic ${Buffer.from(`${o.auth.username}:${o.auth.password}`).toString('base64')}`;
}

/**
 * One call of Orthanc's REST API: a string body goes as JSON, a Buffer as is (POST /instances).
 * The answer parsed as JSON when it is, else its text (kept for the failure message).
 */
export async function orthancRest(
  o: OrthancHandle,
  method: string,
  p: string,
  body?: Buffer | string,
): Promise<{ status: number; json: unknown }> {
  const res = await fetch(`${o.restUrl}${p}`, {
    method,
    headers: {
      authorization: orthancAuthHeader(o),
      ...(typeof body === 'string' ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { body: body as unknown as BodyInit } : {}),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, json };
}

/** Whether e2e tests can run here; `reason` is printed by the skipping test file. */
export function orthancAvailable(): { ok: boolean; reason?: string } {
  if (process.env.RADSCRIBE_IN_NETNS !== '1') {
    return { ok: false, reason: 'not inside the private network namespace (run via test/run-tests.sh)' };
  }
  if (!existsSync(ORTHANC_BINARY)) return { ok: false, reason: `${ORTHANC_BINARY} not installed` };
  if (!existsSync(ORTHANC_DICOMWEB_PLUGIN)) return { ok: false, reason: `${ORTHANC_DICOMWEB_PLUGIN} not installed` };
  return { ok: true };
}

export interface StartOrthancOptions {
  /**
   * Lua scripts Orthanc loads at start (Orthanc Book users/lua.rst), e.g. an
   * `IncomingHttpRequestFilter` that makes the PACS refuse one study.
   */
  readonly luaScripts?: readonly string[];
  /**
   * DicomWeb "Servers" (orthanc-dicomweb's STOW/QIDO/WADO client peers), name → entry such as
   * `{ Url, Username?, Password?, HasDelete? }` or `[url]`, for tests that make Orthanc the client.
   */
  readonly dicomWebServers?: Readonly<Record<string, unknown>>;
  /**
   * Orthanc's `OverwriteInstances` (Orthanc Book, configuration): false (Orthanc's default) keeps
   * the stored copy when an instance with the same SOP Instance UID arrives again, true replaces it.
   */
  readonly overwriteInstances?: boolean;
  /**
   * More top-level Orthanc settings (Orthanc Book configuration.rst), merged last: e.g.
   * `AcceptedTransferSyntaxes`, `DicomModalities`, `DicomAlwaysAllowStore` for a DIMSE peer test.
   */
  readonly extraConfig?: Readonly<Record<string, unknown>>;
}

export async function startOrthanc(options: StartOrthancOptions = {}): Promise<OrthancHandle> {
  const avail = orthancAvailable();
  if (!avail.ok) throw new Error(`startOrthanc refused: ${avail.reason}`);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'orthanc-'));
  const [httpPort, dicomPort] = [await freePort(), await freePort()];
  const auth = { username: 'gw', password: randomBytes(12).toString('hex') };
  const aet = 'ORTHANC';
  const config = {
    Name: 'radscribe-test',
    StorageDirectory: path.join(dir, 'db'),
    IndexDirectory: path.join(dir, 'db'),
    Plugins: [ORTHANC_DICOMWEB_PLUGIN],
    HttpPort: httpPort,
    DicomAet: aet,
    DicomPort: dicomPort,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [auth.username]: auth.password },
    ExecuteLuaEnabled: false,
    ...(options.luaScripts ? { LuaScripts: [...options.luaScripts] } : {}),
    StableAge: 1,
    ...(options.overwriteInstances !== undefined ? { OverwriteInstances: options.overwriteInstances } : {}),
    DicomWeb: {
      Enable: true,
      Root: '/dicom-web/',
      EnableWado: true,
      WadoRoot: '/wado',
      Host: `127.0.0.1:${httpPort}`,
      Ssl: false,
      ...(options.dicomWebServers ? { Servers: options.dicomWebServers } : {}),
    },
    ...options.extraConfig,
  };
  const configPath = path.join(dir, 'orthanc.json');
  await writeFile(configPath, JSON.stringify(config, null, 2));
  const proc: ChildProcess = spawn(ORTHANC_BINARY, [configPath], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderrTail = '';
  proc.stderr?.on('data', (d: Buffer) => {
    stderrTail = (stderrTail + d.toString()).slice(-4000);
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const restUrl = `http://127.0.0.1:${httpPort}`;
  const authHeader = `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      await rm(dir, { recursive: true, force: true });
    })();
    return stopped;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) {
      await stop();
      throw new Error(`Orthanc exited with ${proc.exitCode}: ${stderrTail}`);
    }
    try {
      const res = await fetch(`${restUrl}/system`, { headers: { authorization: authHeader } });
      if (res.ok) {
        await res.text();
        break;
      }
      await res.body?.cancel();
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`Orthanc did not answer /system within 30 s: ${stderrTail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { baseUrl: `${restUrl}/dicom-web`, restUrl, dicomPort, aet, auth, stop };
}
