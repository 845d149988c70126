import { userInfo } from 'node:os';
import path from 'node:path';
import { type LoadConfigOptions, loadConfig, type RadScribeConfig } from '../config.js';
import { setLogLevel } from '../logger.js';

/** Wrong command-line usage: exit code 2 and the usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** `positional[0]` is the command name itself. */
export interface Args {
  readonly positional: string[];
  readonly flags: Map<string, string | true>;
  /** Repeatable flags (e.g. `--text a --text b`) in order. */
  readonly multi: Map<string, string[]>;
}

/** A `radscribe` subcommand. `run` returns the process exit code (0 ok, 1 failure, 2 usage). */
export interface CliCommand {
  readonly name: string;
  /** One usage line per form, e.g. `render <file.dcm> [--frame N] --out <file.png>`. */
  readonly usage: readonly string[];
  /** Flags that take no value. */
  readonly booleanFlags?: readonly string[];
  run(args: Args): Promise<number>;
}

export function parseArgs(argv: readonly string[], booleanFlags: readonly string[] = []): Args {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  const multi = new Map<string, string[]>();
  const bools = new Set(['json', 'help', ...booleanFlags]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    let name = a.slice(2);
    let value: string | true;
    const eq = name.indexOf('=');
    if (eq > 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    } else if (!bools.has(name) && argv[i + 1] !== undefined && !(argv[i + 1] as string).startsWith('--')) {
      value = argv[++i] as string;
    } else value = true;
    flags.set(name, value);
    if (typeof value === 'string') multi.set(name, [...(multi.get(name) ?? []), value]);
  }
  return { positional, flags, multi };
}

export function flag(args: Args, name: string): string | undefined {
  const v = args.flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  return v;
}

export function requiredFlag(args: Args, name: string): string {
  const v = flag(args, name);
  if (v === undefined) throw new UsageError(`--${name} is required`);
  return v;
}

export function intFlag(args: Args, name: string, dflt: number, min = 1): number {
  const v = flag(args, name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer ≥ ${min}`);
  return n;
}

export function boolFlag(args: Args, name: string): boolean {
  return args.flags.get(name) === true;
}

/** Loads and validates the configuration (`--config FILE`), and applies its log level. */
export function configFrom(args: Args, extra: Partial<LoadConfigOptions> = {}): RadScribeConfig {
  const file = flag(args, 'config');
  const cfg = loadConfig({ ...(file ? { file: path.resolve(file) } : {}), ...extra });
  setLogLevel(process.env.RADSCRIBE_LOG_LEVEL ?? cfg.log.level);
  return cfg;
}

/** The audit actor for commands run by a person at the console. */
export const operator = (): string => `cli:${userInfo().username}`;
