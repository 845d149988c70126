import { readFileSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import { parseDicomFile } from '../dicom/dataset.js';
import { buildVisionInput } from '../dicom/image-processor.js';
import { decodeFrame } from '../dicom/pixel-decoder.js';
import { renderFrame } from '../dicom/render.js';
import { errorCodeOf, normalizeErrorString } from '../errors.js';
import type { PrepRequest, PrepResponse } from './image-prep-types.js';

/**
 * Worker-thread entry: file → parse → decode → render → model input (Mllama tiles or plain). Decoding a large JPEG 2000
 * frame takes hundreds of milliseconds of CPU; doing it here keeps the STOW-RS receiver responsive.
 * The parent enforces the time limit (terminates us) and the memory cap (resourceLimits).
 */
const port = parentPort;
if (!port) throw new Error('image-prep-worker must run in a worker thread');

port.on('message', async (req: PrepRequest) => {
  try {
    const inst = parseDicomFile(readFileSync(req.filePath));
    const frame = await decodeFrame(inst, req.frameIndex);
    const image = renderFrame(inst.dataset, frame, req.frameIndex);
    const input = buildVisionInput(image, req.preprocessorConfig);
    const res: PrepResponse = {
      id: req.id,
      ok: true,
      input,
      image: { width: image.width, height: image.height, channels: image.channels },
    };
    port.postMessage(res, [input.pixelValues.buffer as ArrayBuffer]);
  } catch (err) {
    const res: PrepResponse = { id: req.id, ok: false, code: errorCodeOf(err), message: normalizeErrorString(err) };
    port.postMessage(res);
  }
});
