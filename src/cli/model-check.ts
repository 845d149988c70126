import { checkModelBundle } from '../inference/model-check.js';
import { ExecutionProvider } from '../inference/vision-language-model.js';
import { type Args, boolFlag, type CliCommand, flag, UsageError } from './args.js';

/**
 * `radscribe model check <bundle> [--ep cuda|cpu] [--json]` (issue 4): loads the bundle on the EP, compares
 * manifest.json with the sessions' actual inputs and outputs, checks every hash, prints every mismatch.
 * Exit 0 only when the bundle is usable on that EP.
 */
const EXECUTION_PROVIDERS: ReadonlySet<string> = new Set(Object.values(ExecutionProvider));
function isExecutionProvider(v: string): v is ExecutionProvider {
  return EXECUTION_PROVIDERS.has(v);
}

async function run(args: Args): Promise<number> {
  const sub = args.positional[1];
  const dir = args.positional[2];
  if (sub !== 'check' || !dir) throw new UsageError('model: expected "model check <bundle>"');
  const ep = flag(args, 'ep') ?? ExecutionProvider.Cpu;
  if (!isExecutionProvider(ep)) throw new UsageError(`--ep must be ${Object.values(ExecutionProvider).join(' or ')}`);
  const r = await checkModelBundle(dir, { ep });
  if (boolFlag(args, 'json')) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
    return r.ok ? 0 : 1;
  }
  const lines = [
    `bundle   ${r.dir}`,
    `model    ${r.name ?? '?'} ${r.version ?? ''} (${r.family ?? 'unknown family'})`,
    `provider ${r.provider}`,
    ...r.graphs.map(
      (g) => `graph    ${g.path}: ${g.loaded ? `loaded, ${g.inputs} inputs, ${g.outputs} outputs` : 'not loaded'}`,
    ),
    ...r.notes.map((n) => `note     ${n}`),
    ...r.problems.map((p) => `PROBLEM  ${p}`),
    r.ok ? 'OK: the bundle is usable' : `NOT USABLE: ${r.problems.length} problem(s)`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  return r.ok ? 0 : 1;
}

export const modelCommand: CliCommand = {
  name: 'model',
  usage: ['model check <bundle> [--ep cuda|cpu] [--json]'],
  run,
};
