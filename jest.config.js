// Tests are compiled to CJS by @swc/jest (STYLE §2.3). Source imports use `.js` suffixes (NodeNext).
const common = {
  transform: { '^.+\\.(t|j)sx?$': ['@swc/jest', { jsc: { target: 'es2023', parser: { syntax: 'typescript' } }, module: { type: 'commonjs' } }] },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  // jose (OIDC JWTs) ships ECMAScript modules only: compiled to CJS like our own sources.
  transformIgnorePatterns: ['/node_modules/(?!jose/)'],
  testEnvironment: 'node',
  setupFiles: ['<rootDir>/test/wasm-engine-flags.setup.ts'],
};
module.exports = {
  reporters: ['default', '<rootDir>/test/ci-summary-reporter.js'],
  maxWorkers: 2,
  // testTimeout is a global option (ignored inside projects): gateway tests start PGlite and a model worker.
  testTimeout: 120000,
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/test/integration/**/*.int.test.ts'] },
    { ...common, displayName: 'e2e', testMatch: ['<rootDir>/test/e2e/**/*.e2e.test.ts'] },
  ],
};
