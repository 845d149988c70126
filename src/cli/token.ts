import type { RadScribeConfig } from '../config.js';
import { migrate } from '../db/migrate.js';
import { type Database, openDatabase } from '../db/pool.js';
import { type ApiToken, listApiTokens, parseExpiry } from '../http/auth/api-tokens.js';
import { isRole, ROLES } from '../http/auth/roles.js';
import { createTokenAudited, revokeTokenAudited } from '../http/auth/token-admin.js';
import { type Args, type CliCommand, configFrom, flag, operator, requiredFlag, UsageError } from './args.js';

/** `radscribe token create|list|revoke` (issue 12, Access): API tokens for the HTTP endpoints. */

async function withDatabase<T>(cfg: RadScribeConfig, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    return await fn(db);
  } finally {
    await db.close();
  }
}

function state(t: ApiToken, now = Date.now()): string {
  if (t.revokedAt) return 'revoked';
  if (t.expiresAt && t.expiresAt.getTime() <= now) return 'expired';
  return 'active';
}

async function cmdCreate(args: Args): Promise<number> {
  const name = requiredFlag(args, 'name');
  const role = requiredFlag(args, 'role');
  if (!isRole(role)) throw new UsageError(`--role must be one of ${ROLES.join(', ')}`);
  const expires = flag(args, 'expires');
  let expiresAt: Date | undefined;
  try {
    expiresAt = expires ? parseExpiry(expires) : undefined;
  } catch {
    throw new UsageError('--expires must be like 30d, 12h, 90m or an ISO 8601 date-time');
  }
  const scopes = args.multi.get('scope') ?? [];
  if (args.flags.get('scope') === true || scopes.some((s) => !s.startsWith('/')))
    throw new UsageError('--scope must be a path starting with / (e.g. /dicomweb/studies)');
  const cfg = configFrom(args);
  return withDatabase(cfg, async (db) => {
    const { token, secret } = await createTokenAudited(
      db.pool,
      { name, role, scopes, ...(expiresAt ? { expiresAt } : {}) },
      { actor: operator(), via: 'cli' },
    );
    if (args.flags.get('json') === true) process.stdout.write(`${JSON.stringify({ id: token.id, secret })}\n`);
    else {
      process.stdout.write(
        `token ${token.id} "${token.name}" role=${token.role}${token.expiresAt ? ` expires=${token.expiresAt.toISOString()}` : ''}\n`,
      );
      process.stdout.write(`secret (shown once, stored only as its SHA-256):\n${secret}\n`);
    }
    return 0;
  });
}

async function cmdList(args: Args): Promise<number> {
  return withDatabase(configFrom(args), async (db) => {
    const tokens = await listApiTokens(db.pool);
    if (args.flags.get('json') === true) {
      process.stdout.write(
        `${JSON.stringify(
          tokens.map((t) => ({ ...t, state: state(t) })),
          null,
          2,
        )}\n`,
      );
      return 0;
    }
    for (const t of tokens)
      process.stdout.write(
        `${t.id.padStart(5)}  ${state(t).padEnd(8)} ${t.role.padEnd(9)} ${t.name}  created ${t.createdAt.toISOString()} by ${t.createdBy}` +
          `${t.expiresAt ? `  expires ${t.expiresAt.toISOString()}` : ''}${t.scopes.length ? `  scopes ${t.scopes.join(',')}` : ''}` +
          `${t.firstUsedAt ? `  first used ${t.firstUsedAt.toISOString()}` : ''}\n`,
      );
    return 0;
  });
}

async function cmdRevoke(args: Args): Promise<number> {
  const id = args.positional[2];
  if (!id) throw new UsageError('token revoke: give the token id (see token list)');
  return withDatabase(configFrom(args), async (db) => {
    const t = await revokeTokenAudited(db.pool, id, { actor: operator(), via: 'cli' });
    if (!t) {
      process.stderr.write(`no token ${id}\n`);
      return 1;
    }
    process.stdout.write(`token ${t.id} "${t.name}" revoked at ${t.revokedAt?.toISOString()}\n`);
    return 0;
  });
}

async function cmdToken(args: Args): Promise<number> {
  switch (args.positional[1]) {
    case 'create':
      return cmdCreate(args);
    case 'list':
      return cmdList(args);
    case 'revoke':
      return cmdRevoke(args);
    default:
      throw new UsageError('token: expected "create", "list" or "revoke"');
  }
}

export const tokenCommand: CliCommand = {
  name: 'token',
  usage: [
    `token create --name NAME --role ${ROLES.join('|')} [--expires 30d|ISO] [--scope PATH]... [--json]   new API token; prints the secret once`,
    'token list [--json]   API tokens (never their secrets)',
    'token revoke ID   revoke an API token at once',
  ],
  run: cmdToken,
};
