import { echo, parseEchoTarget } from '../dimse/echo-scu.js';
import { type Args, type CliCommand, flag, intFlag, UsageError } from './args.js';

/**
 * `radscribe echo host:port:AET [--aet CALLING] [--timeout MS] [--json]`: C-ECHO (DIMSE
 * Verification) to a node; prints the outcome and the round-trip times. Exit 0 on status 0000.
 */
async function cmdEcho(args: Args): Promise<number> {
  const spec = args.positional[1];
  if (!spec) throw new UsageError('echo needs host:port:AET');
  let target: ReturnType<typeof parseEchoTarget>;
  try {
    target = parseEchoTarget(spec);
  } catch (err: unknown) {
    throw new UsageError((err as Error).message);
  }
  const r = await echo(target, {
    callingAeTitle: flag(args, 'aet') ?? 'RADSCRIBE',
    timeoutMs: intFlag(args, 'timeout', 10_000),
  });
  if (args.flags.get('json') === true) process.stdout.write(`${JSON.stringify({ target, ...r })}\n`);
  else
    process.stdout.write(
      `C-ECHO ${target.calledAeTitle}@${target.host}:${target.port}: ${r.outcome}` +
        (r.echoMs !== undefined ? `, round trip ${r.echoMs} ms` : '') +
        (r.associateMs !== undefined
          ? ` (associate ${r.associateMs} ms, total ${r.totalMs} ms)`
          : ` (${r.totalMs} ms)`) +
        '\n',
    );
  return r.ok ? 0 : 1;
}

export const echoCommand: CliCommand = {
  name: 'echo',
  usage: [
    'echo <host:port:AET> [--aet CALLING] [--timeout MS] [--json]   C-ECHO (DIMSE) a node: outcome and round-trip time',
  ],
  booleanFlags: ['json'],
  run: cmdEcho,
};
