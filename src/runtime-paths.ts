import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * Where the package lives, whether running from `dist/` (production, CLI) or from `src/` under jest.
 * Worker threads must load compiled JavaScript, so `workerScript` always points into `dist/`.
 */
function findPackageRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'migrations'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`package root not found above ${start}`);
    dir = parent;
  }
}

export const PACKAGE_ROOT = findPackageRoot(__dirname);

/** Absolute path of a compiled module under dist/src, e.g. workerScript('inference/inference-worker'). */
export function workerScript(relativeToSrc: string): string {
  const p = path.join(PACKAGE_ROOT, 'dist', 'src', `${relativeToSrc}.js`);
  if (!existsSync(p)) throw new Error(`compiled worker ${p} is missing: run \`npm run build\` first`);
  return p;
}

export const MIGRATIONS_DIR = path.join(PACKAGE_ROOT, 'migrations');
export const FIXTURES_DIR = path.join(PACKAGE_ROOT, 'test', 'fixtures');
