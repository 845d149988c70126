import { existsSync } from 'node:fs';
import path from 'node:path';
import { importSpecifiers, REPO_ROOT, readSource, resolveSpecifier, tsFilesUnder } from './source-scan.js';

/**
 * Issue 8: modules depend inwards only (STYLE §2.1). The inner layers — DICOM codecs and SR
 * (`src/dicom`), the model runtime (`src/inference`) and the database connection (`src/db`) — must
 * not import the HTTP framework or any outer layer, type-only imports included: a type from an outer
 * layer is still a dependency on it.
 */
const INNER_LAYERS = ['src/dicom', 'src/inference', 'src/db'] as const;

/** Outer modules as repository paths: a folder (anything under it) or a file stem. */
const OUTER_FOLDERS = [
  'src/pacs',
  'src/ingest',
  'src/jobs',
  'src/pipeline',
  'src/cli',
  'src/audit',
  'src/export',
] as const;
/** src/gateway.ts and any later src/gateway-*.ts or src/gateway/ folder; src/app.ts; src/cli.ts. */
const OUTER_FILES = [/^src\/gateway(?:[-./].*)?$/, /^src\/app(?:[-./].*)?$/, /^src\/cli$/] as const;
const OUTER_PACKAGES = ['express'] as const;

function outerTarget(fromFile: string, spec: string): string | undefined {
  const r = resolveSpecifier(fromFile, spec);
  if (r.kind === 'package') return (OUTER_PACKAGES as readonly string[]).includes(r.target) ? r.target : undefined;
  if (OUTER_FOLDERS.some((d) => r.target === d || r.target.startsWith(`${d}/`))) return r.target;
  if (OUTER_FILES.some((re) => re.test(r.target))) return r.target;
  return undefined;
}

describe('layering: inner layers import nothing from outer ones', () => {
  it('the inner layers exist and hold sources (the scan is not vacuous)', () => {
    for (const dir of INNER_LAYERS) {
      expect(existsSync(path.join(REPO_ROOT, dir))).toBe(true);
      expect(tsFilesUnder(dir).length).toBeGreaterThan(0);
    }
  });

  it.each(INNER_LAYERS)('%s imports no outer layer and not express', (dir) => {
    const offenders: string[] = [];
    for (const file of tsFilesUnder(dir)) {
      for (const spec of importSpecifiers(readSource(file))) {
        const target = outerTarget(file, spec);
        if (target) offenders.push(`${file} imports '${spec}' (${target})`);
      }
    }
    if (offenders.length > 0) {
      throw new Error(
        `${dir} is an inner layer and must not depend on outer modules (issue 8, STYLE §2.1). ` +
          `Move the shared piece inwards or pass it in as data:\n  ${offenders.join('\n  ')}`,
      );
    }
  });
});

describe('the import scanner', () => {
  const f = 'src/dicom/x.ts';
  it('finds static, multi-line, type-only, re-export, side-effect, dynamic and require imports', () => {
    const src = [
      "import express from 'express';",
      'import {',
      '  a,',
      '  type B,',
      "} from '../pacs/multipart.js';",
      "import type { Job } from '../jobs/types.js';",
      "export { c } from '../ingest/types.js';",
      "export * from '../audit/audit-log.js';",
      "import '../gateway.js';",
      "const m = await import('../pipeline/routing.js');",
      "const r = require('../cli/args.js');",
    ].join('\n');
    expect(importSpecifiers(src).map((s) => outerTarget(f, s))).toEqual(
      expect.arrayContaining([
        'express',
        'src/pacs/multipart',
        'src/jobs/types',
        'src/ingest/types',
        'src/audit/audit-log',
        'src/gateway',
        'src/pipeline/routing',
        'src/cli/args',
      ]),
    );
  });

  it('ignores commented-out imports and allows inner and shared modules', () => {
    const src = [
      "// import express from 'express';",
      "/* import { x } from '../pacs/y.js'; */",
      "import { ErrorCode } from '../errors.js';",
      "import { parsePart10 } from './dataset.js';",
      "import pg from 'pg';",
      'const re = /"/g; // a quote inside a regular expression does not open a string',
      "import { childLogger } from '../logger.js';",
    ].join('\n');
    const specs = importSpecifiers(src);
    expect(specs).toEqual(expect.arrayContaining(['../errors.js', './dataset.js', 'pg', '../logger.js']));
    expect(specs.map((s) => outerTarget(f, s)).filter(Boolean)).toEqual([]);
  });
});
