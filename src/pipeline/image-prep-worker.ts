import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { type NaturalDataset, parseDicomFile } from '../dicom/dataset.js';
import { checkFrameLimits } from '../dicom/frames.js';
import { buildVisionInput } from '../dicom/image-processor.js';
import { checkPart10Limits } from '../dicom/instance-limits.js';
import { isDicomLimitError } from '../dicom/limits.js';
import { decodeFrame } from '../dicom/pixel-decoder.js';
import { renderFrame } from '../dicom/render.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import type { PrepRequest, PrepResponse } from './image-prep-types.js';

/**
 * Worker-thread entry: file → parse → decode → render → model input (Mllama tiles or plain), plus the
 * header from the same parse. This is the only code that opens a stored file during a job (issue 8):
 * frame selection reads the database rows ingest wrote. Decoding a large JPEG 2000 frame takes
 * hundreds of milliseconds of CPU; doing it here keeps the STOW-RS receiver responsive. The parent
 * enforces the time limit (terminates us) and the memory cap (resourceLimits).
 */
const port = parentPort;
if (!port) throw new Error('image-prep-worker must run in a worker thread');

/**
 * A plain copy of a naturalized value that survives postMessage (HTML structured clone): dcmjs
 * decorates value arrays with accessor functions (PN's toJSON/toString) and keeps binary values as
 * views of the file's buffer, which cannot be cloned. Functions are dropped, binary values copied.
 */
function cloneable(v: unknown): unknown {
  if (v instanceof ArrayBuffer) return v.slice(0);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice().buffer;
  if (Array.isArray(v)) return Array.from(v, cloneable);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (typeof x !== 'function') out[k] = cloneable(x);
    return out;
  }
  return v;
}

/**
 * The data set without its pixel elements (Pixel Data, Float and Double Float Pixel Data, PS3.3
 * C.7.6.3): what the SR writer needs, without copying megabytes of pixels back to the parent.
 */
function headerOf(dataset: NaturalDataset): NaturalDataset {
  const { PixelData: _p, FloatPixelData: _f, DoubleFloatPixelData: _d, ...header } = dataset;
  return cloneable(header) as NaturalDataset;
}

// Modules loaded: the client starts a frame's time limit only after this (image-prep-client.ts).
port.postMessage({ ready: true });

port.on('message', async (req: PrepRequest) => {
  let header: NaturalDataset | undefined;
  try {
    const bytes = readFileSync(req.filePath);
    // The DICOM limits before dcmjs sees the file (it recurses per sequence level and inflates a
    // deflated data set whole), and on the frames before any decoder allocates one (issue 9).
    await checkPart10Limits(bytes, req.limits);
    const inst = parseDicomFile(bytes);
    header = headerOf(inst.dataset);
    checkFrameLimits(inst, req.limits);
    const frame = await decodeFrame(inst, req.frameIndex);
    const image = renderFrame(inst.dataset, frame, req.frameIndex);
    const input = buildVisionInput(image, req.preprocessorConfig);
    const res: PrepResponse = {
      id: req.id,
      ok: true,
      input,
      header,
      image: { width: image.width, height: image.height, channels: image.channels },
    };
    port.postMessage(res, [input.pixelValues.buffer as ArrayBuffer]);
  } catch (err) {
    const res: PrepResponse = {
      id: req.id,
      ok: false,
      code: errorCodeOf(err),
      message: normalizeErrorString(err),
      ...(isDicomLimitError(err) ? { violation: err.violation } : {}),
      ...(header ? { header } : {}),
    };
    port.postMessage(res);
  }
});
