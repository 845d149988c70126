// Every jest worker runs PGlite and the wasm codecs in worker threads: set the V8 flags that keep
// them from aborting the worker process before any wasm is instantiated (src/wasm-engine-flags.ts).
import { applyWasmEngineFlags } from '../src/wasm-engine-flags';

applyWasmEngineFlags();
