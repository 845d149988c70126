import type { CliCommand } from './args.js';
import { auditCommand, demoCommand, migrateCommand, serveCommand } from './gateway-commands.js';

/**
 * Every `radscribe` subcommand, in the order `radscribe help` lists them. To add one: create
 * src/cli/<name>.ts exporting a CliCommand and add it here (one import line, one entry).
 */
export const COMMANDS: readonly CliCommand[] = [serveCommand, demoCommand, migrateCommand, auditCommand];
