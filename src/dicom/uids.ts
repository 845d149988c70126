/**
 * The standard's well-known UIDs, one registry per kind (PS3.6 Annex A, Table A-1 "UID Values").
 * Keys are the PS3.6 names in PascalCase; each TSDoc gives the name exactly as PS3.6 spells it.
 * Every UID the code compares against or writes lives here: no bare `'1.2.840.10008.…'`
 * literal elsewhere in `src/`. Pure data; no I/O.
 */

/**
 * Transfer Syntax UIDs (PS3.6 Table A-1, UID Type "Transfer Syntax"; encodings in PS3.5 §10
 * and Annex A). Lists the syntaxes RadScribe reads, writes or names in a refusal, including the
 * retired ones it still meets in archives.
 */
export const TransferSyntax = {
  /** Implicit VR Little Endian: Default Transfer Syntax for DICOM (PS3.5 §A.1). */
  ImplicitVrLittleEndian: '1.2.840.10008.1.2',
  /** Explicit VR Little Endian (PS3.5 §A.2). */
  ExplicitVrLittleEndian: '1.2.840.10008.1.2.1',
  /** Deflated Explicit VR Little Endian (PS3.5 §A.5): the whole data set is raw deflate. */
  DeflatedExplicitVrLittleEndian: '1.2.840.10008.1.2.1.99',
  /** Explicit VR Big Endian (Retired) (PS3.5 §A.3). */
  ExplicitVrBigEndian: '1.2.840.10008.1.2.2',
  /** JPEG Baseline (Process 1) (PS3.5 §A.4.1). */
  JpegBaseline: '1.2.840.10008.1.2.4.50',
  /** JPEG Extended (Process 2 & 4) (PS3.5 §A.4.1). */
  JpegExtended: '1.2.840.10008.1.2.4.51',
  /** JPEG Spectral Selection, Non-Hierarchical (Process 6 & 8) (Retired) (PS3.5 Table A-1, ITU T.81 Annex G). */
  JpegSpectralSelectionNonHierarchical: '1.2.840.10008.1.2.4.53',
  /** JPEG Full Progression, Non-Hierarchical (Process 10 & 12) (Retired) (PS3.5 Table A-1, ITU T.81 Annex G). */
  JpegFullProgressionNonHierarchical: '1.2.840.10008.1.2.4.55',
  /** JPEG Lossless, Non-Hierarchical (Process 14) (PS3.5 §A.4.1). */
  JpegLossless: '1.2.840.10008.1.2.4.57',
  /** JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1]) (PS3.5 §A.4.1). */
  JpegLosslessSv1: '1.2.840.10008.1.2.4.70',
  /** JPEG-LS Lossless Image Compression (PS3.5 §A.4.3). */
  JpegLsLossless: '1.2.840.10008.1.2.4.80',
  /** JPEG-LS Lossy (Near-Lossless) Image Compression (PS3.5 §A.4.3). */
  JpegLsNearLossless: '1.2.840.10008.1.2.4.81',
  /** JPEG 2000 Image Compression (Lossless Only) (PS3.5 §A.4.4). */
  Jpeg2000Lossless: '1.2.840.10008.1.2.4.90',
  /** JPEG 2000 Image Compression (PS3.5 §A.4.4). */
  Jpeg2000: '1.2.840.10008.1.2.4.91',
  /** JPEG XL Lossless (PS3.5 §A.4.12): no Node decoder. */
  JpegXlLossless: '1.2.840.10008.1.2.4.110',
  /** JPEG XL JPEG Recompression (PS3.5 §A.4.12): no Node decoder. */
  JpegXlJpegRecompression: '1.2.840.10008.1.2.4.111',
  /** JPEG XL (PS3.5 §A.4.12): no Node decoder. */
  JpegXl: '1.2.840.10008.1.2.4.112',
  /** High-Throughput JPEG 2000 Image Compression (Lossless Only) (PS3.5 §A.4.11). */
  HtJpeg2000Lossless: '1.2.840.10008.1.2.4.201',
  /** High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only) (PS3.5 §A.4.11). */
  HtJpeg2000LosslessRpcl: '1.2.840.10008.1.2.4.202',
  /** High-Throughput JPEG 2000 Image Compression (PS3.5 §A.4.11). */
  HtJpeg2000: '1.2.840.10008.1.2.4.203',
  /** RLE Lossless (PS3.5 §A.4.2, Annex G). */
  RleLossless: '1.2.840.10008.1.2.5',
  /** Deflated Image Frame Compression (PS3.5 §8.2.16): each frame is raw deflate of native bytes. */
  DeflatedImageFrame: '1.2.840.10008.1.2.8.1',
} as const;
export type TransferSyntax = (typeof TransferSyntax)[keyof typeof TransferSyntax];

/**
 * Storage SOP Class UIDs (PS3.6 Table A-1, UID Type "SOP Class"; Storage Service Class in PS3.4
 * Table B.5-1). The image classes RadScribe describes, the SR classes it reads and writes, and
 * the companion objects it writes.
 */
export const SopClass = {
  /** Verification SOP Class (PS3.4 Annex A): C-ECHO. */
  Verification: '1.2.840.10008.1.1',
  /** Computed Radiography Image Storage. */
  ComputedRadiographyImageStorage: '1.2.840.10008.5.1.4.1.1.1',
  /** Digital X-Ray Image Storage - For Presentation. */
  DigitalXRayImageStorageForPresentation: '1.2.840.10008.5.1.4.1.1.1.1',
  /** Digital X-Ray Image Storage - For Processing. */
  DigitalXRayImageStorageForProcessing: '1.2.840.10008.5.1.4.1.1.1.1.1',
  /** Digital Mammography X-Ray Image Storage - For Presentation. */
  DigitalMammographyXRayImageStorageForPresentation: '1.2.840.10008.5.1.4.1.1.1.2',
  /** CT Image Storage. */
  CtImageStorage: '1.2.840.10008.5.1.4.1.1.2',
  /** Enhanced CT Image Storage. */
  EnhancedCtImageStorage: '1.2.840.10008.5.1.4.1.1.2.1',
  /** Ultrasound Multi-frame Image Storage. */
  UltrasoundMultiFrameImageStorage: '1.2.840.10008.5.1.4.1.1.3.1',
  /** MR Image Storage. */
  MrImageStorage: '1.2.840.10008.5.1.4.1.1.4',
  /** Enhanced MR Image Storage. */
  EnhancedMrImageStorage: '1.2.840.10008.5.1.4.1.1.4.1',
  /** Ultrasound Image Storage. */
  UltrasoundImageStorage: '1.2.840.10008.5.1.4.1.1.6.1',
  /** Secondary Capture Image Storage. */
  SecondaryCaptureImageStorage: '1.2.840.10008.5.1.4.1.1.7',
  /** X-Ray Angiographic Image Storage. */
  XRayAngiographicImageStorage: '1.2.840.10008.5.1.4.1.1.12.1',
  /** Basic Text SR Storage (PS3.3 A.35.1). */
  BasicTextSrStorage: '1.2.840.10008.5.1.4.1.1.88.11',
  /** Enhanced SR Storage (PS3.3 A.35.2). */
  EnhancedSrStorage: '1.2.840.10008.5.1.4.1.1.88.22',
  /** Comprehensive SR Storage (PS3.3 A.35.3): the class of RadScribe's report drafts. */
  ComprehensiveSrStorage: '1.2.840.10008.5.1.4.1.1.88.33',
  /** Comprehensive 3D SR Storage (PS3.3 A.35.13): the class of the AIR profile (SCOORD3D allowed). */
  Comprehensive3dSrStorage: '1.2.840.10008.5.1.4.1.1.88.34',
  /** Extensible SR Storage (PS3.3 A.35.15). */
  ExtensibleSrStorage: '1.2.840.10008.5.1.4.1.1.88.35',
  /** Key Object Selection Document Storage (PS3.3 A.35.4). */
  KeyObjectSelectionDocumentStorage: '1.2.840.10008.5.1.4.1.1.88.59',
  /** Encapsulated PDF Storage (PS3.3 A.45.1): the human-readable companion of a draft. */
  EncapsulatedPdfStorage: '1.2.840.10008.5.1.4.1.1.104.1',
} as const;
export type SopClass = (typeof SopClass)[keyof typeof SopClass];

/** The Structured Report Storage SOP Classes of PS3.4 Table B.5-1 that RadScribe reads back. */
export const SR_SOP_CLASSES: ReadonlySet<string> = new Set<SopClass>([
  SopClass.BasicTextSrStorage,
  SopClass.EnhancedSrStorage,
  SopClass.ComprehensiveSrStorage,
  SopClass.Comprehensive3dSrStorage,
  SopClass.ExtensibleSrStorage,
]);

/**
 * Root of the Storage SOP Classes of PS3.4 Table B.5-1 (all image, SR, waveform, encapsulated and
 * raw data storage classes are registered below it; PS3.6 Table A-1). The C-STORE SCP accepts a
 * presentation context whose abstract syntax lies below it.
 */
export const STORAGE_SOP_CLASS_ROOT = '1.2.840.10008.5.1.4.1.1.';

/** Application Context Names (PS3.6 Table A-1; PS3.7 Annex A.2.1). */
export const ApplicationContextName = {
  /** DICOM Application Context Name. */
  Dicom: '1.2.840.10008.3.1.1.1',
} as const;

/** Mapping Resource UIDs (PS3.6 Table A-1, UID Type "Mapping Resource"; PS3.16 §8.1). */
export const MappingResource = {
  /** DICOM Content Mapping Resource (DCMR): the resource of the PS3.16 templates (TIDs). */
  Dcmr: '1.2.840.10008.8.1.1',
} as const;
export type MappingResource = (typeof MappingResource)[keyof typeof MappingResource];

/** PS3.4 Table C.3-1 / B.5-1: Study Root Query/Retrieve Information Model SOP classes. */
export const QrSopClass = {
  StudyRootFind: '1.2.840.10008.5.1.4.1.2.2.1',
  StudyRootMove: '1.2.840.10008.5.1.4.1.2.2.2',
  StudyRootGet: '1.2.840.10008.5.1.4.1.2.2.3',
} as const;
export type QrSopClass = (typeof QrSopClass)[keyof typeof QrSopClass];
