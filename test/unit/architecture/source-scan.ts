import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/**
 * Helpers for the architecture tests: list the TypeScript sources, strip comments, find import
 * specifiers and SQL writes. Regular expressions over comment-free text are enough here: the rules
 * are about import statements and SQL string constants, both of which are plain text.
 */

export const REPO_ROOT = path.resolve(__dirname, '../../..');

/** Repository-relative paths (forward slashes) of every .ts file under `dir`. */
export function tsFilesUnder(dir: string): string[] {
  const out: string[] = [];
  const walk = (abs: string): void => {
    for (const e of readdirSync(abs, { withFileTypes: true })) {
      const p = path.join(abs, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
    }
  };
  walk(path.join(REPO_ROOT, dir));
  return out.map((p) => path.relative(REPO_ROOT, p).split(path.sep).join('/')).sort();
}

export function readSource(rel: string): string {
  return readFileSync(path.join(REPO_ROOT, rel), 'utf8');
}

/**
 * The text with `//` and `/* *\/` comments blanked out, string and template literal contents kept
 * (SQL lives in them). Newlines are kept so offsets map to the same lines.
 */
export function stripComments(src: string): string {
  let out = '';
  let i = 0;
  let quote: string | null = null;
  while (i < src.length) {
    const c = src[i] as string;
    const next = src[i + 1];
    if (quote) {
      out += c;
      if (c === '\\') {
        out += next ?? '';
        i += 2;
        continue;
      }
      if (c === quote) quote = null;
      i++;
      continue;
    }
    if (c === "'" || c === '"' || c === '`') {
      quote = c;
      out += c;
      i++;
      continue;
    }
    if (c === '/' && next === '/') {
      while (i < src.length && src[i] !== '\n') i++;
      continue;
    }
    if (c === '/' && next === '*') {
      const end = src.indexOf('*/', i + 2);
      const stop = end < 0 ? src.length : end + 2;
      out += src.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
      continue;
    }
    // A regular expression literal (after an operator or an opening bracket): skip it whole, so a
    // quote inside it (/"/g) does not start a string.
    if (c === '/' && next !== '/' && next !== '*' && startsRegex(out)) {
      let j = i + 1;
      let inClass = false;
      while (j < src.length && src[j] !== '\n') {
        const d = src[j];
        if (d === '\\') j++;
        else if (d === '[') inClass = true;
        else if (d === ']') inClass = false;
        else if (d === '/' && !inClass) break;
        j++;
      }
      out += src.slice(i, j + 1);
      i = j + 1;
      continue;
    }
    out += c;
    i++;
  }
  return out;
}

/** Whether a `/` after `before` starts a regular expression literal rather than a division. */
function startsRegex(before: string): boolean {
  const t = before.trimEnd();
  return t === '' || /[(,=:[!&|?{};+\-*%<>~^]$/.test(t) || /\b(?:return|typeof|case|in|of)$/.test(t);
}

/** Module specifiers of static imports, re-exports, dynamic imports and require() calls. */
export function importSpecifiers(src: string): string[] {
  const text = stripComments(src);
  const specs: string[] = [];
  const patterns = [
    // import x from '…', import type { … } from '…', export { … } from '…', export * from '…'
    /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?[^'"`;]*?\bfrom\s*['"]([^'"]+)['"]/g,
    // side-effect import '…'
    /(?:^|[\s;])import\s*['"]([^'"]+)['"]/g,
    // import('…'), require('…')
    /\b(?:import|require)\s*\(\s*['"]([^'"]+)['"]\s*\)/g,
  ];
  for (const re of patterns) for (const m of text.matchAll(re)) specs.push(m[1] as string);
  return specs;
}

/** Where a specifier points: a repository-relative path without extension, or the bare package name. */
export function resolveSpecifier(fromFile: string, spec: string): { kind: 'file' | 'package'; target: string } {
  if (spec.startsWith('.')) {
    const abs = path.posix.normalize(path.posix.join(path.posix.dirname(fromFile), spec));
    return { kind: 'file', target: abs.replace(/\.(js|ts|mjs|cjs)$/, '') };
  }
  if (spec.startsWith('node:')) return { kind: 'package', target: spec };
  const parts = spec.split('/');
  return { kind: 'package', target: spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] as string) };
}

/** Statements that change a table's rows or shape. */
const WRITE_RE =
  /\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|MERGE\s+INTO|(?:CREATE|ALTER|DROP)\s+TABLE(?:\s+IF\s+(?:NOT\s+)?EXISTS)?)\s+(?:ONLY\s+)?(?:"?[a-z_][a-z0-9_]*"?\.)?"?([a-z_][a-z0-9_]*)"?/gi;

export interface SqlWrite {
  readonly verb: string;
  readonly table: string;
  readonly line: number;
}

/** Writes to any of `tables` in the comment-free text of `src`. */
export function sqlWrites(src: string, tables: ReadonlySet<string>): SqlWrite[] {
  const text = stripComments(src);
  const out: SqlWrite[] = [];
  for (const m of text.matchAll(WRITE_RE)) {
    const table = (m[2] as string).toLowerCase();
    if (!tables.has(table)) continue;
    out.push({
      verb: (m[1] as string).replace(/\s+/g, ' ').toUpperCase(),
      table,
      line: text.slice(0, m.index).split('\n').length,
    });
  }
  return out;
}

/** Table names created by the migrations (plus schema_migrations, which migrate.ts creates). */
export function migrationTables(): string[] {
  const dir = path.join(REPO_ROOT, 'migrations');
  const names = new Set<string>(['schema_migrations']);
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.sql'))) {
    const sql = readFileSync(path.join(dir, f), 'utf8');
    for (const m of sql.matchAll(/CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"?([a-z_][a-z0-9_]*)"?/gi))
      names.add((m[1] as string).toLowerCase());
  }
  return [...names].sort();
}
