import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { verifyAuditChain } from '../src/audit/audit-log.js';
import { loadConfig } from '../src/config.js';
import { Gateway } from '../src/gateway.js';
import { createApiToken } from '../src/http/auth/api-tokens.js';
import type { Role } from '../src/http/auth/roles.js';
import { FIXTURES_DIR } from '../src/runtime-paths.js';
import { postgresBinDir, startPrivatePostgres } from './support/private-postgres.js';
import { checkStored, type StowAnswer, spread, storeInstances, uidOfLength, withUids } from './support/stow-load.js';

/**
 * Concurrent STOW-RS and audit queries on the default database settings (issue 9): 32 clients, each
 * 3 requests of 2 instances, while 4 clients query /api/audit, on the embedded PGlite and on a
 * private PostgreSQL cluster (bench/support/private-postgres.ts). Reported per backend: statuses,
 * acknowledged vs rows / files / audit events, latency (median, p95, max) and instances per second.
 * Before issue 9 the embedded backend stalled here (queries stuck behind the shared session).
 */

const TEMPLATE = readFileSync(path.join(FIXTURES_DIR, 'dicom', 'MR_small.dcm'));
const T_SOP = '1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457';
const T_STUDY = '1.3.6.1.4.1.5962.1.2.4.20040826185059.5457';
const CLIENTS = 32;
const REQUESTS = 3;
const PER_REQUEST = 2;

function p95(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] ?? 0;
}

async function loadOnce(name: string, databaseUrl: string): Promise<string> {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'rs-load-bench-'));
  const config = loadConfig({
    env: {},
    overrides: {
      dataDir,
      database: { url: databaseUrl },
      http: { host: '127.0.0.1', port: 0 },
      ingest: { stabilityWindowMs: 3_600_000 },
      destinations: [{ name: 'outbox', type: 'folder', path: path.join(dataDir, 'outbox') }],
      defaultDestination: 'outbox',
      log: { level: 'error' },
    } as never,
  });
  const gw = await Gateway.start(config, { actor: 'bench' });
  try {
    const base = `${gw.baseUrl}/dicomweb`;
    // The gateway asks every caller for a token (README "Access").
    const token = async (role: Role) => ({
      authorization: `Bearer ${(await createApiToken(gw.db.pool, { name: `bench ${role}`, role, createdBy: 'bench' })).secret}`,
    });
    const ingest = await token('ingest');
    const answers: StowAnswer[] = [];
    const auditMs: number[] = [];
    const auditStatus = new Map<number, number>();
    let stowing = true;
    const auditor = await token('auditor');
    const auditors = Array.from({ length: 4 }, async () => {
      while (stowing) {
        const t0 = Date.now();
        const res = await fetch(`${gw.baseUrl}/api/audit?limit=20&kind=instance-received`, { headers: auditor });
        await res.arrayBuffer();
        auditMs.push(Date.now() - t0);
        auditStatus.set(res.status, (auditStatus.get(res.status) ?? 0) + 1);
      }
    });
    const started = Date.now();
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        const study = uidOfLength(T_STUDY.length);
        for (let r = 0; r < REQUESTS; r++) {
          const files = Array.from({ length: PER_REQUEST }, () =>
            withUids(
              TEMPLATE,
              new Map([
                [T_SOP, uidOfLength(T_SOP.length)],
                [T_STUDY, study],
              ]),
            ),
          );
          answers.push(await storeInstances(base, files, 120_000, ingest));
        }
      }),
    );
    const wall = Date.now() - started;
    stowing = false;
    await Promise.all(auditors);
    const acked = answers.flatMap((a) => a.referenced);
    const check = await checkStored(gw.db.pool, acked);
    const chain = await verifyAuditChain(gw.db.pool);
    const statuses = new Map<number, number>();
    for (const a of answers) statuses.set(a.status, (statuses.get(a.status) ?? 0) + 1);
    const ms = answers.map((a) => a.ms);
    const s = spread(ms);
    const fmt = (m: Map<number, number>) => [...m].map(([k, n]) => `${k}×${n}`).join(' ');
    return `| ${name} | ${fmt(statuses)} | ${check.acknowledged}/${CLIENTS * REQUESTS * PER_REQUEST} | ${check.missingRows.length}/${check.missingFiles.length}/${check.missingAudit.length}/${check.duplicateAudit.length} | ${s.median} / ${p95(ms)} / ${s.max} | ${((acked.length * 1000) / wall).toFixed(1)} | ${fmt(auditStatus)}, max ${Math.max(0, ...auditMs)} ms | ${chain.ok ? 'ok' : 'BROKEN'} |`;
  } finally {
    await gw.stop('bench');
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function run(): Promise<void> {
  process.stdout.write(
    `${CLIENTS} STOW-RS clients × ${REQUESTS} requests × ${PER_REQUEST} instances, 4 audit-query clients, default settings\n\n` +
      '| backend | STOW statuses | acknowledged | missing row/file/audit/dup audit | STOW ms median / p95 / max | instances/s | audit queries | chain |\n' +
      '|---|---|---|---|---|---|---|---|\n',
  );
  process.stdout.write(`${await loadOnce('embedded PGlite', '')}\n`);
  if (!postgresBinDir()) {
    process.stdout.write('| PostgreSQL | skipped: no server under /usr/lib/postgresql/*/bin |\n');
    return;
  }
  const server = await startPrivatePostgres();
  try {
    process.stdout.write(`${await loadOnce('PostgreSQL (private cluster)', server.url)}\n`);
  } finally {
    await server.destroy();
  }
}
