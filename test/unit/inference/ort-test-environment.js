// Jest runs each test file in a vm context with its own typed-array constructors, but onnxruntime-node
// builds output tensors from the outer realm's Float32Array, and onnxruntime-common's `instanceof` check
// then rejects them ("A float32 tensor's data must be type of function Float32Array()"). Sharing the outer
// realm's typed arrays makes in-process ORT runs work under jest; production code never runs in a vm.
const { TestEnvironment } = require('jest-environment-node');

const SHARED = [
  'ArrayBuffer',
  'Float32Array',
  'Float64Array',
  'Int8Array',
  'Uint8Array',
  'Uint8ClampedArray',
  'Int16Array',
  'Uint16Array',
  'Int32Array',
  'Uint32Array',
  'BigInt64Array',
  'BigUint64Array',
  'Float16Array',
];

class OrtTestEnvironment extends TestEnvironment {
  constructor(config, context) {
    super(config, context);
    for (const name of SHARED) this.global[name] = globalThis[name];
  }
}

module.exports = OrtTestEnvironment;
