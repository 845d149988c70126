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
export const DType = { FLOAT: onnx.TensorProto.DataType.FLOAT, INT64: onnx.TensorProto.DataType.INT64 } as const;
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

export class GraphBuilder {
  private readonly nodes: onnx.INodeProto[] = [];
  private readonly initializers: onnx.ITensorProto[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private counter = 0;

  constructor(private readonly graphName: string) {}

  input(name: string, elemType: DType, dims: readonly Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: DType, dims: readonly Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
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
