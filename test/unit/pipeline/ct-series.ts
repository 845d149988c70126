import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import dcmjs from 'dcmjs';
import type { ReceivedFile } from '../../../src/ingest/types.js';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/** Test helpers for the pipeline tests: a generated CT series and staged received files. */

export const CT_SMALL = path.join(FIXTURES_DIR, 'dicom', 'CT_small.dcm');

type Dict = Record<string, { vr: string; Value: unknown[] }>;

/**
 * Copies of CT_small.dcm (Explicit VR Little Endian) as slices of one series: slice n gets Instance
 * Number n (0020,0013) and SOP Instance UID `<root>.<100 - n>`, so ordering by UID is the reverse of
 * ordering by Instance Number and a selection that ignored the instance numbers would pick another slice.
 */
export function ctSlice(n: number, root: string): { bytes: Buffer; sopInstanceUid: string } {
  const sopInstanceUid = `${root}.${100 - n}`;
  const bytes = rewritten(CT_SMALL, {
    '00080018': { vr: 'UI', Value: [sopInstanceUid] },
    '00200013': { vr: 'IS', Value: [n] },
  });
  return { bytes, sopInstanceUid };
}

/**
 * A copy of an Explicit VR Little Endian file with some data elements replaced (tag → dcmjs
 * element); a new SOP Instance UID (0008,0018) goes into the File Meta Information too.
 */
export function rewritten(file: string, elements: Dict): Buffer {
  const b = readFileSync(file);
  const dd = dcmjs.data.DicomMessage.readFile(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)) as unknown as {
    meta: Dict;
    dict: Dict;
    write(): ArrayBuffer;
  };
  Object.assign(dd.dict, elements);
  const sop = elements['00080018'];
  if (sop) dd.meta['00020003'] = sop;
  return Buffer.from(dd.write());
}

/** Stage bytes as a front end would: a temporary file plus its size and SHA-256. */
export function received(dir: string, bytes: Buffer): ReceivedFile {
  const p = path.join(dir, `incoming-${randomBytes(6).toString('hex')}.tmp`);
  writeFileSync(p, bytes);
  return { path: p, sizeBytes: bytes.byteLength, sha256: createHash('sha256').update(bytes).digest('hex') };
}
