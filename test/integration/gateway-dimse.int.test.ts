import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { verifyAuditChain } from '../../src/audit/audit-log.js';
import { parsePart10 } from '../../src/dicom/dataset.js';
import { readSr } from '../../src/dicom/sr/reader.js';
import { backends, startTestGateway, type TestGateway, waitFor } from '../support/gateway.js';

/**
 * [REQ-DIMSE-01] (issue 11) A modality reaches RadScribe by DIMSE: DCMTK storescu sends a study to
 * the gateway's configured AE title; the C-STORE goes through the same InstanceStore as STOW-RS, so
 * the study becomes a job after the stability window and ends as a draft SR in the outbox. A
 * calling AE title not allowed is rejected, audited, and the gateway keeps serving.
 */
const run = promisify(execFile);
const SAMPLE = path.join(__dirname, '../fixtures/sample-study/RG3_J2KR.dcm');
const sample = parsePart10(readFileSync(SAMPLE)).dataset;

async function dcmtk(cmd: string, args: string[]): Promise<number> {
  try {
    await run(cmd, args, { timeout: 60_000 });
    return 0;
  } catch (err: unknown) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

describe.each(backends())('gateway DIMSE listener on %s', (backend) => {
  let t: TestGateway;
  let port: number;
  beforeAll(async () => {
    t = await startTestGateway(backend, {
      dimse: {
        listeners: [{ aeTitle: 'RADSCRIBE', port: 0, host: '127.0.0.1', allowedCallingAeTitles: ['MODALITY1'] }],
      },
    });
    const l = t.gw.dimseListeners[0];
    if (!l) throw new Error('no DIMSE listener');
    port = l.port;
  });
  afterAll(async () => {
    await t?.close();
  });

  it('echoscu and storescu in → described → draft SR in the outbox; a disallowed calling AE is rejected and audited', async () => {
    expect(await dcmtk('echoscu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '127.0.0.1', String(port)])).toBe(0);
    expect(
      await dcmtk('storescu', ['-aet', 'MODALITY1', '-aec', 'RADSCRIBE', '-xv', '127.0.0.1', String(port), SAMPLE]),
    ).toBe(0);
    expect(
      await dcmtk('storescu', ['-aet', 'INTRUDER', '-aec', 'RADSCRIBE', '127.0.0.1', String(port), SAMPLE]),
    ).not.toBe(0);

    const row = await t.gw.db.pool.query<{ received_via: string; actor: string }>(
      'SELECT received_via, actor FROM instances WHERE sop_instance_uid = $1',
      [sample.SOPInstanceUID],
    );
    expect(row.rows).toEqual([{ received_via: 'c-store', actor: 'MODALITY1' }]);

    const job = await waitFor(
      'describe-study job',
      async () => {
        const r = await t.gw.db.pool.query<{ state: string; result: { location: string } | null }>(
          'SELECT state, result FROM jobs WHERE study_instance_uid = $1 ORDER BY id DESC LIMIT 1',
          [sample.StudyInstanceUID],
        );
        const j = r.rows[0];
        return j && (j.state === 'succeeded' || j.state === 'failed') ? j : undefined;
      },
      120_000,
    );
    expect(job.state).toBe('succeeded');
    const sr = readSr(readFileSync((job.result as { location: string }).location));
    expect(sr.currentRequestedProcedureEvidence.map((e) => e.sopInstanceUid)).toEqual([sample.SOPInstanceUID]);

    const rejected = await t.gw.db.pool.query<{ actor: string; detail: { reason: number } }>(
      `SELECT actor, detail FROM audit_events WHERE kind = 'association-rejected'`,
    );
    expect(rejected.rows).toEqual([
      expect.objectContaining({ actor: 'INTRUDER', detail: expect.objectContaining({ reason: 3 }) }),
    ]);
    expect((await verifyAuditChain(t.gw.db.pool)).ok).toBe(true);
  });
});
