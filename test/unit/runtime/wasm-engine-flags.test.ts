import { execFileSync } from 'node:child_process';
import { WASM_ENGINE_V8_FLAGS } from '../../../src/wasm-engine-flags';

// v8.setFlagsFromString ignores a flag this V8 does not know, so a Node upgrade that renames or
// drops the flag would silently bring back the wasm wrapper tier-up abort. Ask this Node's V8.
describe('wasm engine V8 flags', () => {
  const v8Options = execFileSync(process.execPath, ['--v8-options'], { encoding: 'utf8' });

  it.each(WASM_ENGINE_V8_FLAGS.map((f) => [f]))('%s is a flag of the running V8', (flag) => {
    const name = flag.replace(/^--/, '').replace(/=.*$/, '');
    expect(v8Options).toMatch(new RegExp(`^\\s*--${name} `, 'm'));
  });

  it('the budget is the largest int flag value, so a wrapper never tiers up', () => {
    const budget = WASM_ENGINE_V8_FLAGS.find((f) => f.startsWith('--wasm-wrapper-tiering-budget='));
    expect(Number(budget?.split('=')[1])).toBe(2 ** 31 - 1);
    // A node started with the flag accepts it (an out-of-range int would make V8 refuse to start).
    const out = execFileSync(process.execPath, [String(budget), '-e', 'process.stdout.write("ok")'], {
      encoding: 'utf8',
    });
    expect(out).toBe('ok');
  });
});
