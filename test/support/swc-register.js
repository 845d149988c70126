'use strict';
/**
 * Run the TypeScript sources in a child process the way jest runs them (jest.config.js: @swc/jest
 * to CommonJS, `.js` import suffixes mapped to the `.ts` sources), without a build. Used by tests
 * that must measure a separate process, e.g. the gateway's peak RSS
 * (test/integration/stow-large-instance.int.test.ts). Usage: node -r ./test/support/swc-register.js x.ts
 */
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const swc = require('@swc/core');

const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, parent, ...rest) {
  if (parent?.filename && /^\.{1,2}\//.test(request) && request.endsWith('.js')) {
    const ts = path.resolve(path.dirname(parent.filename), `${request.slice(0, -3)}.ts`);
    if (fs.existsSync(ts)) return ts;
  }
  return resolve.call(this, request, parent, ...rest);
};

require.extensions['.ts'] = (module, filename) => {
  const { code } = swc.transformSync(fs.readFileSync(filename, 'utf8'), {
    filename,
    jsc: { target: 'es2023', parser: { syntax: 'typescript' } },
    module: { type: 'commonjs' },
    sourceMaps: 'inline',
  });
  module._compile(code, filename);
};
