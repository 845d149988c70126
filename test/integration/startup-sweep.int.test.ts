import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { AuditEventKind } from '../../src/audit/audit-codes.js';
import { recordAudit } from '../../src/audit/audit-log.js';
import { openDatabase } from '../../src/db/pool.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { Gateway } from '../../src/gateway.js';
import { createApiToken } from '../../src/http/auth/api-tokens.js';
import { DicomwebClient } from '../../src/pacs/dicomweb-client.js';
import { backends, testGatewaySetup } from '../support/gateway.js';

/**
 * [REQ-REL-03] Issue 15 "Leftovers": upload spool files (`.part`) of a run killed mid-request are
 * swept at start, before the front ends accept anything, and the sweep is audited with
 * application-start (what was removed was never acknowledged: only a stored instance is).
 */
describe.each(backends())('start-up sweep on %s', (backend) => {
  it('removes the spool files of an earlier run and records how many with application-start', async () => {
    const setup = await testGatewaySetup(backend);
    try {
      const tmp = path.join(setup.dataDir, 'tmp');
      mkdirSync(tmp, { recursive: true });
      const leftovers = ['upload-1.part', 'upload-2.part'].map((f) => path.join(tmp, f));
      for (const f of leftovers) writeFileSync(f, 'half an upload');
      const keep = path.join(tmp, 'not-a-spool-file.txt');
      writeFileSync(keep, 'kept');
      const gw = await Gateway.start(setup.config, { actor: 'test' });
      try {
        expect(leftovers.map((f) => existsSync(f))).toEqual([false, false]);
        expect(existsSync(keep)).toBe(true);
        const { rows } = await gw.db.pool.query<{ detail: Record<string, unknown> }>(
          "SELECT detail FROM audit_events WHERE kind = 'application-start' ORDER BY id DESC LIMIT 1",
        );
        expect(rows[0]?.detail.sweptSpoolFiles).toBe(2);
      } finally {
        await gw.stop('test');
      }
      // A clean restart has nothing to sweep and says nothing about it.
      const again = await Gateway.start(setup.config, { actor: 'test' });
      try {
        const { rows } = await again.db.pool.query<{ detail: Record<string, unknown> }>(
          "SELECT detail FROM audit_events WHERE kind = 'application-start' ORDER BY id DESC LIMIT 1",
        );
        expect(rows[0]?.detail).not.toHaveProperty('sweptSpoolFiles');
      } finally {
        await again.stop('test');
      }
    } finally {
      await setup.dispose();
    }
  }, 120_000);

  it('after a crashed run, removes instance files whose row never committed; keeps held and young ones', async () => {
    const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
    const ds = parsePart10(readFileSync(SAMPLE)).dataset;
    const setup = await testGatewaySetup(backend, { ingest: { stabilityWindowMs: 3_600_000 } });
    try {
      const gw = await Gateway.start(setup.config, { actor: 'test' });
      let token: string;
      try {
        token = (await createApiToken(gw.db.pool, { name: 't', role: 'ingest', createdBy: 'test' })).secret;
        const client = new DicomwebClient({
          baseUrl: `${gw.baseUrl}/dicomweb`,
          timeoutMs: 30_000,
          auth: { type: 'bearer', token },
        });
        expect((await client.storeInstances(undefined, [SAMPLE])).httpStatus).toBe(200);
      } finally {
        await gw.stop('test');
      }
      // A run that started and then died: application-start without a later application-stop.
      const db = await openDatabase({ url: setup.config.database.url || undefined, dataDir: setup.dataDir });
      try {
        await new Promise((r) => setTimeout(r, 20));
        await recordAudit(db.pool, { kind: AuditEventKind.ApplicationStart, actor: 'crashed-run' });
      } finally {
        await db.close();
      }
      const series = path.join(
        setup.dataDir,
        'instances',
        ds.StudyInstanceUID as string,
        ds.SeriesInstanceUID as string,
      );
      const held = path.join(series, `${ds.SOPInstanceUID}.dcm`);
      const orphan = path.join(series, '1.2.826.0.1.3680043.10.99.1.dcm');
      const young = path.join(series, '1.2.826.0.1.3680043.10.99.2.dcm');
      writeFileSync(orphan, 'renamed into place, COMMIT never happened');
      writeFileSync(young, 'another process renamed it a moment ago');
      // Written by the crashed run two minutes ago (after its start), like the held instance.
      const twoMinutesAgo = new Date(Date.now() - 120_000);
      for (const f of [orphan, held]) utimesSync(f, twoMinutesAgo, twoMinutesAgo);
      const again = await Gateway.start(setup.config, { actor: 'test' });
      try {
        expect([existsSync(orphan), existsSync(held), existsSync(young)]).toEqual([false, true, true]);
        const { rows } = await again.db.pool.query<{ detail: Record<string, unknown> }>(
          "SELECT detail FROM audit_events WHERE kind = 'application-start' ORDER BY id DESC LIMIT 1",
        );
        expect(rows[0]?.detail).toMatchObject({
          sweptOrphanInstances: 1,
          sweptOrphanInstanceUids: ['1.2.826.0.1.3680043.10.99.1'],
        });
      } finally {
        await again.stop('test');
      }
    } finally {
      await setup.dispose();
    }
  }, 120_000);
});
