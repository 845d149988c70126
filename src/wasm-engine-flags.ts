import { setFlagsFromString } from 'node:v8';

/**
 * V8 settings for the WebAssembly engines this process runs in worker threads: PGlite (the
 * embedded PostgreSQL) and the pixel codecs (OpenJPEG, CharLS, libjpeg-turbo builds).
 *
 * Why: Node 24's V8 (13.6) aborts the whole process now and then when several isolates churn wasm
 * code: a worker thread's wasm-to-JS import wrapper "tiers up" after
 * `--wasm-wrapper-tiering-budget` calls (default 1000), the superseded wrapper is freed from the
 * process-wide import-wrapper cache, and the code-page registry no longer knows the address:
 * `Check failed: jit_page_->allocations_.erase(addr) == 1` in
 * `ThreadIsolation::UnregisterWasmAllocation`, reached from `Runtime_TierUpWasmToJSWrapper`
 * (core dump of a jest worker, 2026-12-03; the same subsystem as nodejs/node#64500 and
 * electric-sql/pglite#1053, which report it for PGlite start/close churn). The gateway restarts
 * its embedded database and decoder workers by design (a hostile file kills its decoder worker),
 * so it must not depend on that path. With the budget at its maximum a wrapper never tiers up:
 * wasm→JS calls stay on the generic wrapper, which costs nanoseconds per call on a path that is
 * dominated by file and socket I/O.
 *
 * V8 flags are process-wide and must be set before the first wasm module is instantiated, so this
 * runs before any worker that hosts wasm is started, and at process entry. Idempotent.
 */
export const WASM_ENGINE_V8_FLAGS = ['--wasm-wrapper-tiering-budget=2147483647'] as const;

let applied = false;

export function applyWasmEngineFlags(): void {
  if (applied) return;
  for (const flag of WASM_ENGINE_V8_FLAGS) setFlagsFromString(flag);
  applied = true;
}
