import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FIXTURES_DIR } from '../../../src/runtime-paths.js';

/** test/fixtures/corpus (a copy of ../shared/dicom-corpus, see its README.md) and its MANIFEST.tsv. */
export const CORPUS_DIR = path.join(FIXTURES_DIR, 'corpus');

export interface CorpusRow {
  readonly file: string;
  readonly category: string;
  readonly transferSyntaxUid: string;
  readonly photometric: string;
  readonly rows: number;
  readonly refValuesSha256: string;
  readonly refMethod: string;
  readonly refFormat: string;
  readonly lossy: boolean;
  readonly fileSha256: string;
}

export function readCorpusManifest(): CorpusRow[] {
  const lines = readFileSync(path.join(CORPUS_DIR, 'MANIFEST.tsv'), 'utf8').trimEnd().split('\n');
  const header = (lines[0] ?? '').split('\t');
  const col = (cells: string[], name: string): string => cells[header.indexOf(name)] ?? '';
  return lines.slice(1).map((l) => {
    const c = l.split('\t');
    return {
      file: col(c, 'file'),
      category: col(c, 'category'),
      transferSyntaxUid: col(c, 'transfer_syntax_uid').split(' ')[0] ?? '',
      photometric: col(c, 'photometric'),
      rows: Number(col(c, 'rows')) || 0,
      refValuesSha256: col(c, 'ref_values_sha256'),
      refMethod: col(c, 'ref_method'),
      refFormat: col(c, 'ref_format'),
      lossy: col(c, 'lossy') === 'yes',
      fileSha256: col(c, 'file_sha256'),
    };
  });
}

export const corpusPath = (file: string): string => path.join(CORPUS_DIR, file);
