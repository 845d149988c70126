import type { DicomTlsClientConfig } from '../dimse/dicom-tls.js';
import { echo, parseEchoTarget } from '../dimse/echo-scu.js';
import { type Args, type CliCommand, flag, intFlag, UsageError } from './args.js';

/**
 * `radscribe echo host:port:AET [--aet CALLING] [--timeout MS] [--json] [--tls-ca FILE
 * [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]`: C-ECHO (DIMSE Verification) to a
 * node, over DICOM TLS (PS3.15 B.1/B.9) when --tls-ca is given; prints the outcome and the
 * round-trip times. Exit 0 on status 0000.
 */
function tlsOptions(args: Args): DicomTlsClientConfig | undefined {
  const caFile = flag(args, 'tls-ca');
  const certFile = flag(args, 'tls-cert');
  const keyFile = flag(args, 'tls-key');
  const serverName = flag(args, 'tls-server-name');
  if (!caFile) {
    if (certFile || keyFile || serverName)
      throw new UsageError('--tls-cert, --tls-key and --tls-server-name need --tls-ca');
    return undefined;
  }
  if (!certFile !== !keyFile) throw new UsageError('--tls-cert and --tls-key go together');
  return {
    caFile,
    ...(certFile ? { certFile } : {}),
    ...(keyFile ? { keyFile } : {}),
    ...(serverName ? { serverName } : {}),
  };
}

async function cmdEcho(args: Args): Promise<number> {
  const spec = args.positional[1];
  if (!spec) throw new UsageError('echo needs host:port:AET');
  let target: ReturnType<typeof parseEchoTarget>;
  try {
    target = parseEchoTarget(spec);
  } catch (err: unknown) {
    throw new UsageError((err as Error).message);
  }
  const tls = tlsOptions(args);
  const r = await echo(target, {
    callingAeTitle: flag(args, 'aet') ?? 'RADSCRIBE',
    timeoutMs: intFlag(args, 'timeout', 10_000),
    ...(tls ? { tls } : {}),
  });
  if (args.flags.get('json') === true)
    process.stdout.write(`${JSON.stringify({ target: { ...target, tls: tls !== undefined }, ...r })}\n`);
  else
    process.stdout.write(
      `C-ECHO ${target.calledAeTitle}@${target.host}:${target.port}${tls ? ' (TLS)' : ''}: ${r.outcome}` +
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
    '     [--tls-ca FILE [--tls-cert FILE --tls-key FILE] [--tls-server-name NAME]]   over DICOM TLS (PS3.15 B.9)',
  ],
  booleanFlags: ['json'],
  run: cmdEcho,
};
