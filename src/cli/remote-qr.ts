import { AuditEventKind, EventOutcome } from '../audit/audit-codes.js';
import { recordAudit } from '../audit/audit-log.js';
import { DimseOperation, qrPeerOf } from '../config/dimse-qr.js';
import type { RadScribeConfig } from '../config.js';
import { migrate } from '../db/migrate.js';
import { openDatabase } from '../db/pool.js';
import { find, SERIES_RETURN_KEYS, STUDY_RETURN_KEYS } from '../dimse/find-scu.js';
import type { Identifier } from '../dimse/identifier.js';
import { move } from '../dimse/move-scu.js';
import { QueryLevel } from '../dimse/query-retrieve-scu.js';
import { formatStatus } from '../dimse/store-scu.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import { type Args, configFrom, flag, intFlag, operator, UsageError } from './args.js';

/**
 * `radscribe remote find <node>` (C-FIND, STUDY or SERIES level) and `radscribe remote move <node>
 * <StudyInstanceUID>` (C-MOVE to the node's moveDestination, one of our listening AE titles: the
 * running gateway receives the instances). Each is audited like the pollers' (remote-query DCM
 * 110112, remote-retrieve DCM 110104) with the operator as actor.
 */

function dimseNode(cfg: RadScribeConfig, name: string | undefined, op: DimseOperation) {
  const n = cfg.remoteNodes.find((x) => x.name === name);
  if (!n) throw new UsageError(`unknown remote node "${name ?? ''}"`);
  if (!n.dimse) throw new UsageError(`remote node "${n.name}" has no dimse address`);
  if (!n.dimse.operations.includes(op)) throw new UsageError(`remote node "${n.name}" does not allow ${op}`);
  return { node: n, dimse: n.dimse };
}

async function audited(cfg: RadScribeConfig, ev: Parameters<typeof recordAudit>[1]): Promise<void> {
  const db = await openDatabase({ url: cfg.database.url || undefined, dataDir: cfg.dataDir, poolSize: 1 });
  try {
    await migrate(db.pool);
    await recordAudit(db.pool, ev);
  } finally {
    await db.close();
  }
}

export async function cmdRemoteFind(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const { node, dimse } = dimseNode(cfg, args.positional[2], DimseOperation.Find);
  const study = flag(args, 'study');
  const level = study ? QueryLevel.Series : QueryLevel.Study;
  const match: Identifier = {};
  const date = flag(args, 'study-date');
  if (date !== undefined) {
    if (!/^(\d{8})?(-(\d{8})?)?$/.test(date) || date === '-')
      throw new UsageError('remote find: --study-date must be YYYYMMDD or a range YYYYMMDD-YYYYMMDD');
    match.StudyDate = date;
  }
  const modality = flag(args, 'modality');
  if (modality !== undefined) match[level === QueryLevel.Study ? 'ModalitiesInStudy' : 'Modality'] = modality;
  if (study) match.StudyInstanceUID = study;
  const keys = { ...(level === QueryLevel.Study ? STUDY_RETURN_KEYS : SERIES_RETURN_KEYS), ...match };
  const query: Record<string, string> = { QueryRetrieveLevel: level, ...(match as Record<string, string>) };
  const base = { kind: AuditEventKind.RemoteQuery, actor: operator(), destination: node.name } as const;
  try {
    const r = await find(qrPeerOf(dimse), { level, keys, limit: intFlag(args, 'limit', 100) });
    await audited(cfg, { ...base, detail: { query, results: r.matches.length, via: 'c-find' } });
    if (args.flags.get('json') === true) {
      process.stdout.write(
        `${JSON.stringify({ matches: r.matches, status: r.status, incomplete: r.incomplete ?? null }, null, 2)}\n`,
      );
      return 0;
    }
    for (const m of r.matches) {
      process.stdout.write(
        level === QueryLevel.Study
          ? `${m.StudyInstanceUID ?? ''}\t${m.StudyDate ?? ''}\t${m.ModalitiesInStudy ?? ''}\tseries=${m.NumberOfStudyRelatedSeries ?? ''}\tinstances=${m.NumberOfStudyRelatedInstances ?? ''}\n`
          : `${m.SeriesInstanceUID ?? ''}\t${m.Modality ?? ''}\t${m.SeriesNumber ?? ''}\tinstances=${m.NumberOfSeriesRelatedInstances ?? ''}\n`,
      );
    }
    if (r.incomplete) process.stderr.write(`cancelled at ${r.incomplete}: the PACS may hold more matches\n`);
    return 0;
  } catch (err: unknown) {
    await audited(cfg, {
      ...base,
      outcome: EventOutcome.SeriousFailure,
      detail: { query, errorCode: errorCodeOf(err), via: 'c-find' },
    });
    process.stderr.write(`remote find: ${normalizeErrorString(err)} (${errorCodeOf(err)})\n`);
    return 1;
  }
}

export async function cmdRemoteMove(args: Args): Promise<number> {
  const cfg = configFrom(args);
  const { node, dimse } = dimseNode(cfg, args.positional[2], DimseOperation.Move);
  const study = args.positional[3];
  if (!study) throw new UsageError('remote move: expected <node> <StudyInstanceUID>');
  const dest = flag(args, 'destination') ?? dimse.moveDestination;
  if (!dest) throw new UsageError(`remote node "${node.name}" has no moveDestination`);
  const series = args.multi.get('series');
  const base = {
    kind: AuditEventKind.RemoteRetrieve,
    actor: operator(),
    source: node.name,
    studyInstanceUid: study,
  } as const;
  try {
    const r = await move(qrPeerOf(dimse), {
      studyInstanceUid: study,
      moveDestination: dest,
      ...(series && series.length > 0 ? { seriesInstanceUids: series } : {}),
      onProgress: (s) =>
        process.stderr.write(`remaining=${s.remaining ?? '?'} completed=${s.completed ?? 0} failed=${s.failed ?? 0}\n`),
    });
    const ok = r.failed === 0 && r.outcome === 'success';
    await audited(cfg, {
      ...base,
      outcome: ok ? EventOutcome.Success : EventOutcome.MinorFailure,
      detail: {
        via: 'c-move',
        moveDestination: dest,
        stored: r.completed,
        failed: r.failed,
        warning: r.warning,
        status: formatStatus(r.status),
      },
    });
    process.stdout.write(
      `${formatStatus(r.status)} completed=${r.completed} failed=${r.failed} warning=${r.warning}\n`,
    );
    return ok ? 0 : 1;
  } catch (err: unknown) {
    await audited(cfg, {
      ...base,
      outcome: EventOutcome.SeriousFailure,
      detail: { via: 'c-move', moveDestination: dest, errorCode: errorCodeOf(err) },
    });
    process.stderr.write(`remote move: ${normalizeErrorString(err)} (${errorCodeOf(err)})\n`);
    return 1;
  }
}
