import type { CliCommand } from './args.js';
import { auditCommand } from './audit.js';
import { describeCommand } from './describe.js';
import { echoCommand } from './echo.js';
import { demoCommand, migrateCommand, serveCommand } from './gateway-commands.js';
import { modelCommand } from './model-check.js';
import { remoteCommand } from './remote.js';
import { renderCommand } from './render.js';
import { retentionCommand } from './retention.js';
import { rulesCommand } from './rules.js';
import { srCommand } from './sr.js';
import { studiesCommand } from './studies.js';
import { tilesCommand } from './tiles.js';
import { tokenCommand } from './token.js';

/**
 * Every `radscribe` subcommand, in the order `radscribe help` lists them. To add one: create
 * src/cli/<name>.ts exporting a CliCommand and add it here (one import line, one entry).
 */
export const COMMANDS: readonly CliCommand[] = [
  serveCommand,
  demoCommand,
  migrateCommand,
  auditCommand,
  tokenCommand,
  remoteCommand,
  studiesCommand,
  rulesCommand,
  echoCommand,
  retentionCommand,
  srCommand,
  modelCommand,
  describeCommand,
  renderCommand,
  tilesCommand,
];
