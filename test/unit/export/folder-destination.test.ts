import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { FolderDestination } from '../../../src/export/sr-destination.js';
import { removeStaleSpoolFiles } from '../../../src/pacs/temp-spool.js';

/** Leftovers of a process killed mid-write (crash trials, issue 9). */
describe('files a killed gateway leaves behind', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'rs-leftover-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('FolderDestination.send removes temp files of the same SR written by a dead process', async () => {
    const study = '1.2.3';
    const sop = '1.2.3.4';
    mkdirSync(path.join(dir, study));
    const stale = path.join(dir, study, `${sop}.dcm.999999.tmp`);
    const otherSr = path.join(dir, study, '1.2.3.5.dcm.999999.tmp');
    writeFileSync(stale, 'half an SR');
    writeFileSync(otherSr, 'another SR, still being written');
    const { location } = await new FolderDestination('outbox', dir).send({
      studyInstanceUid: study,
      sopInstanceUid: sop,
      part10: new Uint8Array([1, 2, 3]),
    });
    expect([...readFileSync(location)]).toEqual([1, 2, 3]);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(otherSr)).toBe(true);
    expect(readdirSync(path.join(dir, study)).sort()).toEqual([`${sop}.dcm`, '1.2.3.5.dcm.999999.tmp']);
  });

  it('removeStaleSpoolFiles deletes *.part spool files and nothing else', async () => {
    writeFileSync(path.join(dir, 'stow-1.part'), 'x');
    writeFileSync(path.join(dir, 'wado-2.part'), 'x');
    writeFileSync(path.join(dir, 'keep.txt'), 'x');
    expect(await removeStaleSpoolFiles(dir)).toBe(2);
    expect(readdirSync(dir)).toEqual(['keep.txt']);
    expect(await removeStaleSpoolFiles(dir)).toBe(0);
  });
});
