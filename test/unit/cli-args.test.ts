import { boolFlag, flag, intFlag, parseArgs, requiredFlag, UsageError } from '../../src/cli/args.js';
import { main, usage } from '../../src/cli.js';

describe('parseArgs', () => {
  it('separates positionals, valued, boolean and repeated flags', () => {
    const a = parseArgs(
      ['sr', '--source', 'a.dcm', '--source=b.dcm', '--text', 'x y', '--pdf', '--out', 'o.dcm'],
      ['pdf'],
    );
    expect(a.positional).toEqual(['sr']);
    expect(a.multi.get('source')).toEqual(['a.dcm', 'b.dcm']);
    expect(flag(a, 'text')).toBe('x y');
    expect(boolFlag(a, 'pdf')).toBe(true);
    expect(requiredFlag(a, 'out')).toBe('o.dcm');
  });
  it('reports usage errors', () => {
    const a = parseArgs(['render', '--frame', 'zero', '--out']);
    expect(() => intFlag(a, 'frame', 1)).toThrow(UsageError);
    expect(() => flag(a, 'out')).toThrow(/needs a value/);
    expect(() => requiredFlag(a, 'model')).toThrow(/--model is required/);
    expect(intFlag(parseArgs(['x']), 'frame', 1)).toBe(1);
  });
});

describe('radscribe main', () => {
  it('lists every command in its usage', () => {
    for (const c of ['serve', 'demo', 'migrate', 'audit list', 'audit verify']) expect(usage()).toContain(c);
  });
  it('exits 2 on an unknown command', async () => {
    const err = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(await main(['frobnicate'])).toBe(2);
      expect(String(err.mock.calls[0]?.[0])).toContain('unknown command "frobnicate"');
    } finally {
      err.mockRestore();
    }
  });
});
