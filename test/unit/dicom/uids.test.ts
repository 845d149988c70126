import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { isValidUid } from '../../../src/dicom/dataset.js';
import { MappingResource, SopClass, SR_SOP_CLASSES, TransferSyntax } from '../../../src/dicom/uids.js';
import { PACKAGE_ROOT } from '../../../src/runtime-paths.js';

/** One name, one definition (issue 8): the standard's UIDs live in src/dicom/uids.ts only. */

const REGISTRIES = { TransferSyntax, SopClass, MappingResource } as const;

describe('uids.ts registries', () => {
  it.each(Object.entries(REGISTRIES))(
    '%s: every value is a valid DICOM UID under the 1.2.840.10008 root',
    (_n, reg) => {
      for (const uid of Object.values(reg)) {
        expect(isValidUid(uid)).toBe(true);
        expect(uid.startsWith('1.2.840.10008.')).toBe(true);
      }
    },
  );
  it('no UID appears twice, in one registry or across them', () => {
    const all = Object.values(REGISTRIES).flatMap((r) => Object.values(r) as string[]);
    expect(new Set(all).size).toBe(all.length);
  });
  it('spot-checks against PS3.6 Table A-1', () => {
    expect(TransferSyntax.ImplicitVrLittleEndian).toBe('1.2.840.10008.1.2');
    expect(TransferSyntax.ExplicitVrBigEndian).toBe('1.2.840.10008.1.2.2');
    expect(TransferSyntax.JpegFullProgressionNonHierarchical).toBe('1.2.840.10008.1.2.4.55');
    expect(SopClass.ComprehensiveSrStorage).toBe('1.2.840.10008.5.1.4.1.1.88.33');
    expect(SopClass.EncapsulatedPdfStorage).toBe('1.2.840.10008.5.1.4.1.1.104.1');
    expect(MappingResource.Dcmr).toBe('1.2.840.10008.8.1.1');
  });
  it('SR_SOP_CLASSES are the five SR Storage classes of PS3.4 Table B.5-1 that RadScribe reads', () => {
    expect([...SR_SOP_CLASSES].sort()).toEqual(
      [
        SopClass.BasicTextSrStorage,
        SopClass.EnhancedSrStorage,
        SopClass.ComprehensiveSrStorage,
        SopClass.Comprehensive3dSrStorage,
        SopClass.ExtensibleSrStorage,
      ].sort(),
    );
  });
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

it('no source file outside src/dicom/uids.ts spells a UID of the standard as a string literal', () => {
  const src = path.join(PACKAGE_ROOT, 'src');
  const registry = path.join(src, 'dicom', 'uids.ts');
  const offenders: string[] = [];
  for (const file of sourceFiles(src)) {
    if (file === registry) continue;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, '').trim();
        if (code.startsWith('*') || code.startsWith('/*')) return; // TSDoc may cite a UID
        if (/['"`]1\.2\.840\.10008\.[0-9.]+['"`]/.test(code)) offenders.push(`${path.relative(src, file)}:${i + 1}`);
      });
  }
  expect(offenders).toEqual([]);
});
