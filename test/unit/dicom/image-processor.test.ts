import {
  buildPlainInput,
  buildVisionInput,
  ImageProcessorFamily,
  imageProcessorFamily,
  parsePlainPreprocessorConfig,
  plainResizeTarget,
} from '../../../src/dicom/image-processor.js';
import { PilFilter, resizeBilinearPil } from '../../../src/dicom/pil-resize.js';
import type { RenderedImage } from '../../../src/dicom/render.js';
import { ModelError } from '../../../src/errors.js';

/** preprocessor_config.json shapes as published on the Hugging Face Hub (values copied, trimmed). */
const GEMMA3 = {
  // google/medgemma-4b-it, google/gemma-3-4b-it
  image_processor_type: 'Gemma3ImageProcessor',
  do_convert_rgb: null,
  do_normalize: true,
  do_pan_and_scan: null,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 2,
  rescale_factor: 0.00392156862745098,
  size: { height: 896, width: 896 },
};
const SIGLIP = {
  // google/siglip-so400m-patch14-384
  image_processor_type: 'SiglipImageProcessor',
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { height: 384, width: 384 },
};
const LLAVA = {
  // llava-hf/llava-1.5-7b-hf
  image_processor_type: 'CLIPImageProcessor',
  crop_size: { height: 336, width: 336 },
  do_center_crop: true,
  do_convert_rgb: true,
  do_normalize: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.48145466, 0.4578275, 0.40821073],
  image_std: [0.26862954, 0.26130258, 0.27577711],
  resample: 3,
  rescale_factor: 0.00392156862745098,
  size: { shortest_edge: 336 },
};
const SMOLVLM = {
  // HuggingFaceTB/SmolVLM-256M-Instruct (global image; image splitting is not done here)
  image_processor_type: 'Idefics3ImageProcessor',
  do_convert_rgb: true,
  do_image_splitting: true,
  do_normalize: true,
  do_pad: true,
  do_rescale: true,
  do_resize: true,
  image_mean: [0.5, 0.5, 0.5],
  image_std: [0.5, 0.5, 0.5],
  resample: 1,
  rescale_factor: 0.00392156862745098,
  size: { longest_edge: 512 },
};

function grey(w: number, h: number): RenderedImage {
  const data = new Uint8Array(w * h);
  for (let i = 0; i < data.length; i++) data[i] = (i * 37) % 256;
  return { width: w, height: h, channels: 1, data };
}

describe('image processor family comes from image_processor_type, never the model name', () => {
  it.each([
    ['MllamaImageProcessor', ImageProcessorFamily.Mllama],
    ['Gemma3ImageProcessor', ImageProcessorFamily.Plain],
    ['SiglipImageProcessorFast', ImageProcessorFamily.Plain],
    ['CLIPImageProcessor', ImageProcessorFamily.Plain],
    ['Idefics3ImageProcessor', ImageProcessorFamily.Plain],
  ])('%s → %s', (type, family) => {
    expect(imageProcessorFamily({ image_processor_type: type })).toBe(family);
  });
  it('an unknown type is a ModelError listing the known ones', () => {
    expect(() => imageProcessorFamily({ image_processor_type: 'Qwen2VLImageProcessor' })).toThrow(ModelError);
  });
});

describe('plain resize / crop / pad / normalise', () => {
  it('Gemma 3 / MedGemma: fixed 896×896, bilinear, (x/255 − 0.5)/0.5', () => {
    const img = grey(300, 200);
    const out = buildPlainInput(img, parsePlainPreprocessorConfig(GEMMA3));
    expect(out.dims).toEqual([1, 3, 896, 896]);
    const resized = resizeBilinearPil(img.data, 300, 200, 1, 896, 896, PilFilter.Bilinear);
    const v = resized[1234] ?? 0;
    const expected = Math.fround(Math.fround(Math.fround(v * GEMMA3.rescale_factor) - 0.5) / 0.5);
    for (const c of [0, 1, 2]) expect(out.pixelValues[c * 896 * 896 + 1234]).toBe(expected);
  });

  it('SigLIP: bicubic (resample 3) differs from bilinear, same size', () => {
    const img = grey(50, 40);
    const cfg = parsePlainPreprocessorConfig(SIGLIP);
    expect(cfg.resample).toBe(PilFilter.Bicubic);
    const out = buildPlainInput(img, cfg);
    expect(out.dims).toEqual([1, 3, 384, 384]);
    const bil = buildPlainInput(img, { ...cfg, resample: PilFilter.Bilinear });
    expect(out.pixelValues).not.toEqual(bil.pixelValues);
  });

  it('LLaVA-1.5 (CLIP): shortest edge 336, then centre crop 336×336', () => {
    expect(plainResizeTarget(400, 800, { mode: 'shortest-edge', shortestEdge: 336 })).toEqual([336, 672]);
    const out = buildPlainInput(grey(800, 400), parsePlainPreprocessorConfig(LLAVA));
    expect(out.dims).toEqual([1, 3, 336, 336]);
    expect(out.resized).toEqual([336, 672]);
  });

  it('SmolVLM (Idefics3): longest edge 512, padded to a square with 0 after resizing', () => {
    const cfg = parsePlainPreprocessorConfig(SMOLVLM);
    expect(cfg.padToSquareAfter).toBe(true);
    const out = buildPlainInput(grey(200, 100), cfg);
    expect(out.resized).toEqual([256, 512]);
    expect(out.dims).toEqual([1, 3, 512, 512]);
    // Bottom-right is padding: uint8 0 normalised = (0 − 0.5)/0.5 = −1.
    expect(out.pixelValues[512 * 512 - 1]).toBe(-1);
  });

  it('LLaVA do_pad pads to a square with the mean colour before resizing', () => {
    const cfg = parsePlainPreprocessorConfig({ ...GEMMA3, image_processor_type: 'LlavaImageProcessor', do_pad: true });
    expect(cfg.padToSquareBefore).toBe(true);
    const out = buildPlainInput(grey(100, 50), { ...cfg, doResize: false });
    expect(out.dims).toEqual([1, 3, 100, 100]);
    // Top-left is padding of int(0.5·255) = 127 → (127/255 − 0.5)/0.5.
    expect(out.pixelValues[0]).toBeCloseTo((127 / 255 - 0.5) / 0.5, 5);
  });

  it('collects every config problem in one ModelError', () => {
    try {
      parsePlainPreprocessorConfig({
        image_processor_type: 'SiglipImageProcessor',
        size: {},
        resample: 9,
        image_std: [0, 1, 1],
      });
      throw new Error('expected a ModelError');
    } catch (err) {
      expect(err).toBeInstanceOf(ModelError);
      expect((err as Error).message).toMatch(/size: .*resample: .*image_std/);
    }
  });

  it('buildVisionInput dispatches on the config', () => {
    expect(buildVisionInput(grey(20, 20), SIGLIP).family).toBe('plain');
  });
});
