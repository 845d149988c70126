// Prints the closing line CI reads: "N passed, N failed, N skipped" (js-stack.md §9).
// It is written when the process exits so that it is the very last line, after jest's own summary.
module.exports = class CiSummaryReporter {
  onRunComplete(_contexts, r) {
    const failed = r.numFailedTests + r.numRuntimeErrorTestSuites;
    const line = `${r.numPassedTests} passed, ${failed} failed, ${r.numPendingTests + r.numTodoTests} skipped\n`;
    process.once('exit', () => process.stdout.write(`\n${line}`));
  }
};
