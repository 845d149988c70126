import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Gateway } from '../../src/gateway.js';
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
});
