import { createHash } from 'node:crypto';
import path from 'node:path';
import {
  generateAnchorKeys,
  type LoadedAnchor,
  readAnchors,
  readPrivateKey,
  readPublicKey,
  readVerifiedHead,
  writeVerifiedHead,
} from '../audit/audit-anchor.js';
import { type ArchiveReport, verifyArchive } from '../audit/audit-archive.js';
import type { AuditEventKind } from '../audit/audit-codes.js';
import { listAudit } from '../audit/audit-log.js';
import {
  AuditOutputFormat,
  AuditQueryError,
  auditEventsCsv,
  parseAuditQuery,
  queryAuditEvents,
  recordRefusedAuditQuery,
} from '../audit/audit-query.js';
import { type AuditRetentionReport, runAuditRetention } from '../audit/audit-retention.js';
import { type AuditChainReport, verifyAuditChain } from '../audit/audit-verify.js';
import type { RadScribeConfig } from '../config.js';
import { migrate } from '../db/migrate.js';
import { type Database, openDatabase } from '../db/pool.js';
import { type Args, boolFlag, type CliCommand, configFrom, flag, intFlag, operator, UsageError } from './args.js';
import { formatAuditTable } from './gateway-commands.js';

/** `radscribe audit list|query|verify|keygen` (issue 12 queries and tamper evidence, issue 15 verify). */

async function withDatabase<T>(cfg: RadScribeConfig, fn: (db: Database) => Promise<T>): Promise<T> {
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 2 });
  try {
    await migrate(db.pool);
    return await fn(db);
  } finally {
    await db.close();
  }
}

/** CLI flag → query parameter: `--patient-id` and `--patientId` both name `patientId`. */
const camel = (s: string): string => s.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());

export function queryParametersOf(args: Args): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [k, v] of args.flags) {
    if (k === 'config') continue;
    // --json is every command's spelling of JSON output.
    if (k === 'json' && v === true) {
      params.format ??= 'json';
      continue;
    }
    const name = camel(k);
    const values = args.multi.get(k) ?? [];
    // A flag without a value is passed as empty, so the parser names it; a repeated one as a list.
    params[name] = v === true ? '' : values.length > 1 ? values : v;
  }
  return params;
}

async function cmdQuery(args: Args): Promise<number> {
  const cfg = configFrom(args);
  return withDatabase(cfg, async (db) => {
    const who = { actor: operator() };
    let query: ReturnType<typeof parseAuditQuery>;
    try {
      query = parseAuditQuery(queryParametersOf(args));
    } catch (err: unknown) {
      if (!(err instanceof AuditQueryError)) throw err;
      await recordRefusedAuditQuery(db.pool, who, err).catch(() => undefined);
      // CLI spelling of the parameter in the message: --patient-id for patientId.
      throw new UsageError(`audit query: ${err.message}`);
    }
    const page = await queryAuditEvents(db.pool, query, who);
    if (query.format === AuditOutputFormat.Csv) {
      process.stdout.write(auditEventsCsv(page.events));
      if (page.nextCursor) process.stderr.write(`next page: --cursor ${page.nextCursor}\n`);
    } else process.stdout.write(`${JSON.stringify(page, null, 2)}\n`);
    return 0;
  });
}

export function formatVerifyReport(r: AuditChainReport): string {
  const retention =
    r.checkpoints > 0
      ? `; events up to ${r.droppedThrough} archived and dropped by retention (${r.checkpoints} checkpoint(s)${r.archivesChecked ? `, ${r.archivesChecked} archive(s) verified` : ''})`
      : '';
  const notes = r.notes.map((n) => `note: ${n}\n`).join('');
  return formatChainReport(r, retention) + notes;
}

function formatChainReport(r: AuditChainReport, retention: string): string {
  if (r.ok) {
    const anchors = r.anchorsChecked
      ? `; ${r.anchorsChecked} anchor(s) verified`
      : '\nnote: no signed anchors checked: without them, rows deleted from the end or a truncated table are caught only against the previous verification (--anchors DIR)';
    const previous = r.previousRunChecked ? '; contains the head the previous verification saw' : '';
    const lanes = r.heads.length === 1 ? '1 lane' : `${r.heads.length} lanes`;
    return `audit chain intact: ${r.checked} events in ${lanes}, last event ${r.headId}${previous}${retention}${anchors}\n`;
  }
  const where = r.firstBrokenId !== undefined ? ` at event ${r.firstBrokenId}` : '';
  return `AUDIT CHAIN BROKEN${where} (${r.checked} checked, ${r.anchorsChecked} anchor(s))\n${r.problems.map((p) => `  ${p.kind}: ${p.message}\n`).join('')}`;
}

async function cmdVerify(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const dir = flag(args, 'anchors') ?? (cfg.audit.anchor.directory || undefined);
  const keyFile = flag(args, 'public-key') ?? (cfg.audit.anchor.publicKeyFile || undefined);
  const anchors: LoadedAnchor[] = [];
  if (dir) {
    if (!keyFile) throw new UsageError('audit verify --anchors: needs --public-key FILE or audit.anchor.publicKeyFile');
    anchors.push(...readAnchors(dir, readPublicKey(keyFile)));
  }
  const archiveDir = flag(args, 'archives');
  if (archiveDir && !keyFile)
    throw new UsageError('audit verify --archives: needs --public-key FILE or audit.anchor.publicKeyFile');
  const archives = archiveDir && keyFile ? { directory: archiveDir, publicKey: readPublicKey(keyFile) } : undefined;
  return withDatabase(cfg, async (db) => {
    // The head the previous successful run on this database saw: a chain shorter than that is
    // refused too. One file per database (cluster, database, schema), so verifying another
    // database from the same data directory is not mistaken for a shortened chain.
    const stateFile =
      flag(args, 'state') ?? path.join(cfg.dataDir, 'audit', `verified-head-${await databaseKey(db)}.json`);
    const previous = readVerifiedHead(stateFile);
    const r = await verifyAuditChain(db.pool, {
      anchors: previous ? [...anchors, previous] : anchors,
      ...(archives ? { archives } : {}),
    });
    process.stdout.write(formatVerifyReport(r));
    if (r.ok) writeVerifiedHead(stateFile, r.heads);
    return r.ok ? 0 : 1;
  });
}

/** A short stable name of the database verified: cluster system identifier, database, schema. */
async function databaseKey(db: Database): Promise<string> {
  const where = `current_database() || '/' || current_schema()`;
  let key: string;
  try {
    const { rows } = await db.pool.query<{ k: string }>(
      `SELECT (SELECT system_identifier::text FROM pg_control_system()) || '/' || ${where} AS k`,
    );
    key = rows[0]?.k ?? '';
  } catch {
    // pg_control_system() may be refused to a role without the privilege: name it without the cluster.
    const { rows } = await db.pool.query<{ k: string }>(`SELECT ${where} AS k`);
    key = rows[0]?.k ?? '';
  }
  return createHash('sha256').update(key).digest('hex').slice(0, 12);
}

function cmdKeygen(args: Args): number {
  const cfg = configFrom(args);
  const priv = flag(args, 'private-key') ?? (cfg.audit.anchor.privateKeyFile || undefined);
  const pub = flag(args, 'public-key') ?? (cfg.audit.anchor.publicKeyFile || undefined);
  if (!priv || !pub) throw new UsageError('audit keygen: needs --private-key FILE and --public-key FILE');
  generateAnchorKeys(priv, pub);
  process.stdout.write(`Ed25519 anchor key pair written: ${priv} (private, mode 0600), ${pub} (public)\n`);
  return 0;
}

async function cmdList(args: Args): Promise<number> {
  const cfg = configFrom(args);
  return withDatabase(cfg, async (db) => {
    const since = flag(args, 'since');
    const kind = flag(args, 'kind');
    const study = flag(args, 'study');
    const events = await listAudit(
      db.pool,
      {
        limit: intFlag(args, 'limit', 50),
        ...(since ? { since: new Date(since) } : {}),
        ...(kind ? { kind: kind as AuditEventKind } : {}),
        ...(study ? { studyInstanceUid: study } : {}),
      },
      operator(),
    );
    if (args.flags.get('json') === true) process.stdout.write(`${JSON.stringify(events, null, 2)}\n`);
    else process.stdout.write(formatAuditTable(events));
    return 0;
  });
}

/** `audit retention run [--dry-run]`: one audit retention pass now, as configured (audit.retention). */
async function cmdRetention(args: Args): Promise<number> {
  if (args.positional[2] !== 'run') throw new UsageError('audit retention: expected "run"');
  const cfg = configFrom(args);
  const r = cfg.audit.retention;
  if (r.periodDays === 0) {
    process.stdout.write('audit.retention.periodDays is 0: every audit event is kept\n');
    return 0;
  }
  const privateKey = readPrivateKey(cfg.audit.anchor.privateKeyFile);
  return withDatabase(cfg, async (db) => {
    const report = await runAuditRetention({
      pool: db.pool,
      periodDays: r.periodDays,
      archiveDirectory: r.archiveDirectory,
      segmentRows: r.segmentRows,
      privateKey,
      dryRun: boolFlag(args, 'dry-run'),
      actor: operator(),
      maxSegments: intFlag(args, 'max-segments', 1_000_000),
    });
    if (args.flags.get('json') === true) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else process.stdout.write(formatAuditRetentionReport(report));
    return 0;
  });
}

export function formatAuditRetentionReport(r: AuditRetentionReport): string {
  const verb = r.dryRun ? 'would drop' : 'dropped';
  const lines = r.segments.map(
    (s) =>
      `${verb} segment (${s.fromId}, ${s.toId}]: ${s.rows} events in ${s.lanes} lane(s)${s.manifestFile ? `, archive ${s.manifestFile}, checkpoint event ${s.checkpointEventId}` : ''}${s.ms ? ` (export ${s.ms.export.toFixed(0)} ms, verify ${s.ms.verify.toFixed(0)} ms, drop ${s.ms.drop.toFixed(0)} ms)` : ''}`,
  );
  const total = r.segments.reduce((n, s) => n + s.rows, 0);
  lines.push(
    `${r.dryRun ? 'dry run: would drop' : 'dropped'} ${r.segments.length} segment(s), ${total} events older than ${r.cutoff}; stopped: ${r.stoppedBecause}`,
  );
  return `${lines.join('\n')}\n`;
}

export function formatArchiveReport(r: ArchiveReport): string {
  if (r.ok && r.manifest)
    return `archive intact: ${r.manifestFile}: segment (${r.manifest.fromId}, ${r.manifest.toId}], ${r.rowsChecked} events in ${r.manifest.lanes.length} lane(s), signature valid, sha256 ${r.manifest.sha256}\n`;
  return `ARCHIVE BROKEN: ${r.manifestFile}\n  ${r.problem?.kind}: ${r.problem?.message}\n`;
}

/** `audit archive verify <file>`: one archive from its files alone (signature, digest, every row). */
async function cmdArchive(args: Args): Promise<number> {
  const file = args.positional[3];
  if (args.positional[2] !== 'verify' || !file) throw new UsageError('audit archive: expected "verify <file>"');
  const cfg = configFrom(args);
  const keyFile = flag(args, 'public-key') ?? (cfg.audit.anchor.publicKeyFile || undefined);
  if (!keyFile) throw new UsageError('audit archive verify: needs --public-key FILE or audit.anchor.publicKeyFile');
  const r = await verifyArchive(path.resolve(file), readPublicKey(keyFile));
  process.stdout.write(formatArchiveReport(r));
  return r.ok ? 0 : 1;
}

async function cmdAudit(args: Args): Promise<number> {
  switch (args.positional[1]) {
    case 'list':
      return cmdList(args);
    case 'query':
      return cmdQuery(args);
    case 'verify':
      return cmdVerify(args);
    case 'keygen':
      return cmdKeygen(args);
    case 'retention':
      return cmdRetention(args);
    case 'archive':
      return cmdArchive(args);
    default:
      throw new UsageError('audit: expected "list", "query", "verify", "keygen", "retention" or "archive"');
  }
}

export const auditCommand: CliCommand = {
  name: 'audit',
  usage: [
    'audit list [--config FILE] [--limit N] [--study UID] [--kind KIND] [--since ISO] [--json]   recent audit events (the query is audited)',
    'audit query [--from ISO] [--to ISO] [--type KIND|DCM-ID] [--outcome 0|4|8|12] [--actor USER|AE] [--address ADDR] [--patient-id ID] [--study-uid UID] [--limit N] [--cursor C] [--format json|csv]   compliance query (audited)',
    'audit verify [--config FILE] [--anchors DIR] [--archives DIR] [--public-key FILE] [--state FILE]   check the hash chain in application code, against the signed anchors, the archives of dropped segments and the head the previous run saw',
    'audit keygen [--config FILE] [--private-key FILE] [--public-key FILE]   make the Ed25519 key pair that signs the anchors',
    'audit retention run [--config FILE] [--dry-run] [--max-segments N] [--json]   archive (signed), verify and drop the segments older than audit.retention.periodDays',
    'audit archive verify <file> [--config FILE] [--public-key FILE]   check one archive of a dropped segment: signature, SHA-256, every hash and link',
  ],
  booleanFlags: ['dry-run'],
  run: cmdAudit,
};
