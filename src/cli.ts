#!/usr/bin/env node
import { parseArgs, UsageError } from './cli/args.js';
import { COMMANDS } from './cli/registry.js';
import { ConfigError, normalizeErrorString } from './errors.js';
import { applyWasmEngineFlags } from './wasm-engine-flags.js';

/**
 * `radscribe` command line. Results go to stdout; logs (JSON) go to stderr.
 * Exit codes: 0 success, 1 failure, 2 usage or configuration error.
 */

export function usage(): string {
  const lines = COMMANDS.flatMap((c) => c.usage.map((u) => `  ${u}`));
  return `usage: radscribe <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nEvery command honours DATABASE_URL (else an embedded PostgreSQL under the data directory).`;
}

export async function main(argv: readonly string[]): Promise<number> {
  const cmd = argv[0];
  const command = COMMANDS.find((c) => c.name === cmd);
  try {
    if (cmd === undefined || cmd === 'help' || cmd === '--help') {
      process.stdout.write(`${usage()}\n`);
      return cmd === undefined ? 2 : 0;
    }
    if (!command) throw new UsageError(`unknown command "${cmd}"`);
    return await command.run(parseArgs(argv, command.booleanFlags));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`radscribe: ${err.message}\n${usage()}\n`);
      return 2;
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`radscribe: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`radscribe: ${normalizeErrorString(err)}\n`);
    return 1;
  }
}

if (require.main === module) {
  applyWasmEngineFlags();
  main(process.argv.slice(2)).then(
    (code) => {
      // serve returns only after a clean shutdown; the one-shot commands may leave idle sockets of
      // the embedded database behind, so exit explicitly once stdout is flushed.
      process.stdout.write('', () => process.exit(code));
    },
    (err: unknown) => {
      process.stderr.write(`radscribe: ${normalizeErrorString(err)}\n`);
      process.exitCode = 1;
    },
  );
}
