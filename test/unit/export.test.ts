import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ErrorCode, RadScribeError } from '../../src/errors.js';
import { FolderDestination } from '../../src/export/sr-destination.js';

describe('FolderDestination', () => {
  it('writes <study>/<sop>.dcm atomically and idempotently', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-outbox-'));
    const dest = new FolderDestination('outbox', dir);
    const sr = { studyInstanceUid: '1.2.3', sopInstanceUid: '2.25.99', part10: new Uint8Array([1, 2, 3]) };
    const a = await dest.send(sr);
    const b = await dest.send({ ...sr, part10: new Uint8Array([4, 5]) });
    expect(a.location).toBe(path.join(dir, '1.2.3', '2.25.99.dcm'));
    expect(b.location).toBe(a.location);
    expect([...readFileSync(a.location)]).toEqual([4, 5]);
    // No temporary files left behind.
    expect(readdirSync(path.join(dir, '1.2.3'))).toEqual(['2.25.99.dcm']);
  });

  it('classifies a write failure as a typed error', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'rs-outbox-'));
    await new FolderDestination('x', dir).send({
      studyInstanceUid: 'f',
      sopInstanceUid: '1',
      part10: new Uint8Array(1),
    });
    const bad = new FolderDestination('bad', path.join(dir, 'f', '1.dcm'));
    const err = await bad
      .send({ studyInstanceUid: '1.2', sopInstanceUid: '1.3', part10: new Uint8Array(1) })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RadScribeError);
    expect((err as RadScribeError).code).toBe(ErrorCode.Internal);
  });
});
