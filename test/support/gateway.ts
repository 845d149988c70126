import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createServerDatabase } from '../../bench/support/server-database.js';
import { loadConfig, type RadScribeConfig } from '../../src/config.js';
import { Gateway } from '../../src/gateway.js';
import { createApiToken } from '../../src/http/auth/api-tokens.js';
import { ROLES, type Role } from '../../src/http/auth/roles.js';

/**
 * Database backends a gateway test runs against: the embedded PGlite always, and the PostgreSQL
 * server named by DATABASE_URL when it is set (CI sets it), so both paths are exercised in one run.
 */
export type Backend = 'pglite' | 'postgresql';
export function backends(): Backend[] {
  return process.env.DATABASE_URL ? ['pglite', 'postgresql'] : ['pglite'];
}

/** One API token per role (the gateway asks every caller but /health for one, README "Access"). */
export type RoleTokens = Readonly<Record<Role, string>>;

/** Creates one token per role on a started gateway's database (no audit event: test fixtures). */
export async function createRoleTokens(gw: Gateway): Promise<RoleTokens> {
  const out: Partial<Record<Role, string>> = {};
  for (const role of ROLES)
    out[role] = (await createApiToken(gw.db.pool, { name: `test ${role}`, role, createdBy: 'test' })).secret;
  return out as RoleTokens;
}

/** `{ authorization: 'Bearer …' }` for fetch. */
export function bearer(token: string): Record<string, string> {
  return { authorization: `Bearer ${token}` };
}

export interface TestGateway {
  readonly gw: Gateway;
  /** API tokens, one per role, valid across restart(). */
  readonly tokens: RoleTokens;
  /** Authorization header of a role's token, for fetch. */
  auth(role: Role): Record<string, string>;
  readonly config: RadScribeConfig;
  readonly dataDir: string;
  /** Stop the gateway and start it again on the same data (restart survival). */
  restart(): Promise<Gateway>;
  close(): Promise<void>;
}

/** A gateway configuration on fresh data (and, for the server, a fresh database); nothing started. */
export interface TestGatewaySetup {
  readonly config: RadScribeConfig;
  readonly dataDir: string;
  /** Drops the server database and deletes the data directory. */
  dispose(): Promise<void>;
}

export async function testGatewaySetup(
  backend: Backend,
  overrides: Record<string, unknown> = {},
): Promise<TestGatewaySetup> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-gw-'));
  const server =
    backend === 'postgresql'
      ? await createServerDatabase(process.env.DATABASE_URL as string, 'radscribe_gw')
      : undefined;
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      database: { url: server?.url ?? '' },
      http: { host: '127.0.0.1', port: 0 },
      ingest: { stabilityWindowMs: 300 },
      jobs: { pollIntervalMs: 100 },
      destinations: [{ name: 'outbox', type: 'folder', path: path.join(dataDir, 'outbox') }],
      defaultDestination: 'outbox',
      ...(overrides as object),
    } as never,
  });
  return {
    config,
    dataDir,
    async dispose() {
      await server?.drop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function startTestGateway(
  backend: Backend,
  overrides: Record<string, unknown> = {},
): Promise<TestGateway> {
  const { config, dataDir, dispose } = await testGatewaySetup(backend, overrides);
  let gw = await Gateway.start(config, { actor: 'test' });
  let tokens: RoleTokens;
  try {
    tokens = await createRoleTokens(gw);
  } catch (err: unknown) {
    await gw.stop('test');
    await dispose();
    throw err;
  }
  let closed = false;
  return {
    get gw() {
      return gw;
    },
    tokens,
    auth: (role) => bearer(tokens[role]),
    config,
    dataDir,
    async restart() {
      await gw.stop('test');
      gw = await Gateway.start(config, { actor: 'test' });
      return gw;
    },
    async close() {
      if (closed) return;
      closed = true;
      await gw.stop('test');
      await dispose();
    },
  };
}

/** Wait until `fn` returns a value, polling; throws after the timeout. */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
