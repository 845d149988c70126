import { onnx } from 'onnx-proto';

/**
 * A small ONNX graph builder over onnx-proto's ModelProto (js-stack.md §1: "written with onnx-proto@8.0.1").
 * Opset 17, default domain only, so the graph runs identically on the CPU and CUDA EPs (no com.microsoft ops).
 * Tensors are stored as little-endian raw_data so the encoded bytes depend only on the values (deterministic).
 */

export const OPSET = 17;
/** IR version 8 = ONNX 1.10, the proto version onnx-proto 8.0.1 ships; ORT 1.30 reads it. */
const IR_VERSION = 8;

export type Dim = number | string;
export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };
export const DType = {
  FLOAT: onnx.TensorProto.DataType.FLOAT,
  INT64: onnx.TensorProto.DataType.INT64,
  FLOAT16: onnx.TensorProto.DataType.FLOAT16,
  BOOL: onnx.TensorProto.DataType.BOOL,
} as const;
export type DType = (typeof DType)[keyof typeof DType];

function valueInfo(name: string, elemType: DType, dims: readonly Dim[]): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (typeof v === 'string') return { name, type: T.STRING, s: Buffer.from(v, 'utf8') };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}

/** A declared graph input or output as the manifest lists it (onnxruntime-common Tensor.Type names). */
export interface IoSpec {
  name: string;
  dtype: 'float32' | 'float16' | 'int64' | 'bool';
  dims: Dim[];
}

const DTYPE_NAME: Record<DType, IoSpec['dtype']> = {
  [DType.FLOAT]: 'float32',
  [DType.INT64]: 'int64',
  [DType.FLOAT16]: 'float16',
  [DType.BOOL]: 'bool',
};

/**
 * `floatIo: 'float16'` declares every float graph input and output as float16 with a Cast at the boundary,
 * while the arithmetic stays float32 inside. That is the I/O contract of an fp16 export (KV cache, logits,
 * embeddings in float16), which is what the runtime's dtype handling must get right; the fixture's numbers
 * stay comparable with the fp32 variant.
 */
export interface GraphBuilderOptions {
  floatIo?: 'float32' | 'float16';
}

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly io: { inputs: IoSpec[]; outputs: IoSpec[] } = { inputs: [], outputs: [] };
  private readonly fp16Outputs: string[] = [];
  private readonly fp16: boolean;
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(
    private readonly graphName: string,
    opts: GraphBuilderOptions = {},
  ) {
    this.fp16 = opts.floatIo === 'float16';
  }

  /** Declares an input; returns the name to compute with (a float32 Cast of it when I/O is float16). */
  input(name: string, elemType: DType, dims: readonly Dim[]): string {
    const declared = this.fp16 && elemType === DType.FLOAT ? DType.FLOAT16 : elemType;
    this.inputs.push(valueInfo(name, declared, dims));
    this.io.inputs.push({ name, dtype: DTYPE_NAME[declared], dims: [...dims] });
    if (declared === elemType) return name;
    return this.op('Cast', [name], { to: DType.FLOAT }, `${name}__f32`);
  }

  output(name: string, elemType: DType, dims: readonly Dim[]): void {
    const declared = this.fp16 && elemType === DType.FLOAT ? DType.FLOAT16 : elemType;
    this.outputs.push(valueInfo(name, declared, dims));
    this.io.outputs.push({ name, dtype: DTYPE_NAME[declared], dims: [...dims] });
    if (declared !== elemType) this.fp16Outputs.push(name);
  }

  /** The declared inputs and outputs, in declaration order, for manifest.json. */
  ioSpec(): { inputs: IoSpec[]; outputs: IoSpec[] } {
    return { inputs: [...this.io.inputs], outputs: [...this.io.outputs] };
  }

  /**
   * float16 outputs: the float32 producer is renamed `<name>__f32` (and every consumer follows it), then a
   * Cast writes the declared name. Done at encode time because outputs such as present.* are also consumed
   * inside the graph after they are declared.
   */
  private castFp16Outputs(): void {
    for (const name of this.fp16Outputs) {
      const internal = `${name}__f32`;
      for (const n of this.nodes) {
        n.output = (n.output ?? []).map((o) => (o === name ? internal : o));
        n.input = (n.input ?? []).map((i) => (i === name ? internal : i));
      }
      this.nodes.push({
        opType: 'Cast',
        name: `Cast_out_${name}`,
        input: [internal],
        output: [name],
        attribute: [attribute('to', DType.FLOAT16)],
      });
    }
    this.fp16Outputs.length = 0;
  }

  /** A float32 initializer (weights). */
  weight(name: string, dims: readonly number[], data: Float32Array): string {
    const expected = dims.reduce((a, b) => a * b, 1);
    if (data.length !== expected)
      throw new Error(`initializer ${name}: ${data.length} values for dims ${dims.join('x')}`);
    this.initializers.push({
      name,
      dims: [...dims],
      dataType: DType.FLOAT,
      rawData: Buffer.from(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** An int64 constant initializer (shapes, axes, indices). */
  ints(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = `const_i64_${this.counter++}`;
    const buf = Buffer.alloc(values.length * 8);
    values.forEach((v, i) => {
      buf.writeBigInt64LE(BigInt(v), i * 8);
    });
    this.initializers.push({ name, dims: [...dims], dataType: DType.INT64, rawData: buf });
    return name;
  }

  /** A float32 scalar (or small) constant initializer. */
  floats(values: readonly number[], dims: readonly number[] = []): string {
    const name = `const_f32_${this.counter++}`;
    return this.weight(name, dims, Float32Array.from(values));
  }

  /** Adds a node and returns its first output name (use `opN` for several outputs). */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, outName?: string): string {
    const [first] = this.opN(opType, inputs, 1, attrs, outName === undefined ? undefined : [outName]);
    if (first === undefined) throw new Error('unreachable: opN returned no outputs');
    return first;
  }

  opN(
    opType: string,
    inputs: readonly string[],
    nOutputs: number,
    attrs: Record<string, AttrValue> = {},
    outNames?: readonly string[],
  ): string[] {
    const id = this.counter++;
    const outputs = Array.from({ length: nOutputs }, (_, i) => outNames?.[i] ?? `${opType.toLowerCase()}_${id}_${i}`);
    this.nodes.push({
      opType,
      name: `${opType}_${id}`,
      input: [...inputs],
      output: outputs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outputs;
  }

  /** Serializes the model; identical inputs give identical bytes. */
  encode(docString: string): Uint8Array {
    this.castFp16Outputs();
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'radscribe-make-fixture-model',
      producerVersion: '1',
      docString,
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}
