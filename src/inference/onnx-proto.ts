import { ErrorCode, ModelError } from '../errors.js';

/**
 * A minimal reader of ONNX ModelProto files (onnx/onnx.proto, protobuf wire format): the graph's nodes with
 * their attributes, and its initializers. Enough to check what a bundle's graph really contains (MatMulNBits
 * nodes, packed weights) without Python or a protobuf dependency; onnxruntime's API exposes only I/O metadata.
 * Field numbers are those of onnx.proto (IR version 3+), cited at each reader.
 */

/** Protobuf wire types (protobuf encoding spec, "Message Structure"). */
const WireType = { Varint: 0, Fixed64: 1, LengthDelimited: 2, Fixed32: 5 } as const;

/** TensorProto.DataType values used by RadScribe graphs (onnx.proto `enum DataType`). */
export const OnnxDataType = { Float: 1, Uint8: 2, Int8: 3, Int32: 6, Int64: 7, Float16: 10 } as const;

export interface OnnxTensor {
  name: string;
  dims: number[];
  dataType: number;
  /** raw_data (little-endian, as numpy_helper.from_array writes); empty when the data is typed or external. */
  raw: Uint8Array;
  /** float_data (field 4) when the tensor was written typed rather than raw. */
  floatData: number[];
  /** true when the tensor lives in external data (data_location = EXTERNAL). */
  external: boolean;
}

export interface OnnxAttribute {
  name: string;
  i?: number;
  f?: number;
  s?: string;
  ints: number[];
}

export interface OnnxNode {
  name: string;
  opType: string;
  domain: string;
  inputs: string[];
  outputs: string[];
  attributes: Record<string, OnnxAttribute>;
}

export interface OnnxGraph {
  nodes: OnnxNode[];
  initializers: Map<string, OnnxTensor>;
  /** opset_import: domain ('' = ai.onnx) → version. */
  opsets: Map<string, number>;
}

class Reader {
  pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    readonly end = buf.length,
  ) {}

  done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let value = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.end) throw new ModelError(ErrorCode.ModelInvalid, 'ONNX protobuf: truncated varint');
      const b = this.buf[this.pos++] as number;
      value += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) break;
      scale *= 128;
    }
    // int64 fields: negative values are ten-byte two's complement.
    return value >= 2 ** 63 ? value - 2 ** 64 : value;
  }

  bytes(): Uint8Array {
    const n = this.varint();
    if (this.pos + n > this.end)
      throw new ModelError(ErrorCode.ModelInvalid, 'ONNX protobuf: length past the end of the message');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fixed32(): DataView {
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 4);
    this.pos += 4;
    return v;
  }

  skip(wire: number): void {
    if (wire === WireType.Varint) this.varint();
    else if (wire === WireType.Fixed64) this.pos += 8;
    else if (wire === WireType.LengthDelimited) this.bytes();
    else if (wire === WireType.Fixed32) this.pos += 4;
    else throw new ModelError(ErrorCode.ModelInvalid, `ONNX protobuf: unsupported wire type ${wire}`);
  }

  /** Calls `on(field, wire)` for every field; `on` must consume the value or return false to skip it. */
  fields(on: (field: number, wire: number) => boolean): void {
    while (!this.done()) {
      const key = this.varint();
      const field = Math.floor(key / 8);
      const wire = key & 7;
      if (!on(field, wire)) this.skip(wire);
    }
  }
}

const utf8 = new TextDecoder();
const sub = (b: Uint8Array) => new Reader(b);

/** Repeated int64: packed (length-delimited) or one varint per field occurrence. */
function int64s(r: Reader, wire: number, into: number[]): void {
  if (wire === WireType.LengthDelimited) {
    const p = sub(r.bytes());
    while (!p.done()) into.push(p.varint());
  } else into.push(r.varint());
}

function readTensor(b: Uint8Array): OnnxTensor {
  const t: OnnxTensor = { name: '', dims: [], dataType: 0, raw: new Uint8Array(0), floatData: [], external: false };
  const r = sub(b);
  // TensorProto: dims 1, data_type 2, float_data 4, name 8, raw_data 9, data_location 14.
  r.fields((f, w) => {
    if (f === 1) int64s(r, w, t.dims);
    else if (f === 2 && w === WireType.Varint) t.dataType = r.varint();
    else if (f === 4 && w === WireType.LengthDelimited) {
      const p = r.bytes();
      const v = new DataView(p.buffer, p.byteOffset, p.byteLength);
      for (let i = 0; i + 4 <= p.byteLength; i += 4) t.floatData.push(v.getFloat32(i, true));
    } else if (f === 4 && w === WireType.Fixed32) t.floatData.push(r.fixed32().getFloat32(0, true));
    else if (f === 8 && w === WireType.LengthDelimited) t.name = utf8.decode(r.bytes());
    else if (f === 9 && w === WireType.LengthDelimited) t.raw = r.bytes();
    else if (f === 14 && w === WireType.Varint) t.external = r.varint() === 1;
    else return false;
    return true;
  });
  return t;
}

function readAttribute(b: Uint8Array): OnnxAttribute {
  const a: OnnxAttribute = { name: '', ints: [] };
  const r = sub(b);
  // AttributeProto: name 1, f 2, i 3, s 4, ints 8.
  r.fields((f, w) => {
    if (f === 1 && w === WireType.LengthDelimited) a.name = utf8.decode(r.bytes());
    else if (f === 2 && w === WireType.Fixed32) a.f = r.fixed32().getFloat32(0, true);
    else if (f === 3 && w === WireType.Varint) a.i = r.varint();
    else if (f === 4 && w === WireType.LengthDelimited) a.s = utf8.decode(r.bytes());
    else if (f === 8) int64s(r, w, a.ints);
    else return false;
    return true;
  });
  return a;
}

function readNode(b: Uint8Array): OnnxNode {
  const n: OnnxNode = { name: '', opType: '', domain: '', inputs: [], outputs: [], attributes: {} };
  const r = sub(b);
  // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5, domain 7.
  r.fields((f, w) => {
    if (w !== WireType.LengthDelimited) return false;
    const v = r.bytes();
    if (f === 1) n.inputs.push(utf8.decode(v));
    else if (f === 2) n.outputs.push(utf8.decode(v));
    else if (f === 3) n.name = utf8.decode(v);
    else if (f === 4) n.opType = utf8.decode(v);
    else if (f === 5) {
      const a = readAttribute(v);
      n.attributes[a.name] = a;
    } else if (f === 7) n.domain = utf8.decode(v);
    return true;
  });
  return n;
}

/**
 * Parses a whole .onnx file already in memory (graph files of external-data bundles are small; a graph with
 * inline weights is at most 2 GB by protobuf's limit). Initializers keep views into `buf`, no copies.
 */
export function readOnnxModel(buf: Uint8Array): OnnxGraph {
  const g: OnnxGraph = { nodes: [], initializers: new Map(), opsets: new Map() };
  const r = new Reader(buf);
  // ModelProto: opset_import 8 (OperatorSetIdProto: domain 1, version 2), graph 7.
  r.fields((f, w) => {
    if (w !== WireType.LengthDelimited || (f !== 7 && f !== 8)) return false;
    const v = r.bytes();
    if (f === 8) {
      let domain = '';
      let version = 0;
      const o = sub(v);
      o.fields((of, ow) => {
        if (of === 1 && ow === WireType.LengthDelimited) domain = utf8.decode(o.bytes());
        else if (of === 2 && ow === WireType.Varint) version = o.varint();
        else return false;
        return true;
      });
      g.opsets.set(domain, version);
      return true;
    }
    const gr = sub(v);
    // GraphProto: node 1, initializer 5.
    gr.fields((gf, gw) => {
      if (gw !== WireType.LengthDelimited || (gf !== 1 && gf !== 5)) return false;
      const gv = gr.bytes();
      if (gf === 1) g.nodes.push(readNode(gv));
      else {
        const t = readTensor(gv);
        g.initializers.set(t.name, t);
      }
      return true;
    });
    return true;
  });
  return g;
}
