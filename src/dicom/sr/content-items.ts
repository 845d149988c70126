import { SrValidationError } from '../../errors.js';
import { isValidUid, type NaturalDataset } from '../dataset.js';
import { MappingResource } from '../uids.js';
import { assertCode, type Code } from './coding.js';
import { firstForbiddenUtIndex, replaceForbiddenUt } from './vr.js';

/**
 * SR content items, one class per value type (PS3.3 §C.17.3 SR Document Content Module, Table C.17-6;
 * modelled on highdicom `sr/value_types.py`). Constructors validate, so an invalid tree cannot be built
 * (STYLE rule 4); `toDataset()` yields the naturalized content item (dcmjs keywords).
 */

/** Value Type (0040,A040) defined terms, PS3.3 §C.17.3.2.1. */
export const ValueType = {
  CONTAINER: 'CONTAINER',
  TEXT: 'TEXT',
  CODE: 'CODE',
  NUM: 'NUM',
  UIDREF: 'UIDREF',
  IMAGE: 'IMAGE',
  PNAME: 'PNAME',
  DATE: 'DATE',
  TIME: 'TIME',
  DATETIME: 'DATETIME',
  COMPOSITE: 'COMPOSITE',
  WAVEFORM: 'WAVEFORM',
  SCOORD: 'SCOORD',
  SCOORD3D: 'SCOORD3D',
  TCOORD: 'TCOORD',
  TABLE: 'TABLE',
} as const;
export type ValueType = (typeof ValueType)[keyof typeof ValueType];
const VALUE_TYPES: ReadonlySet<string> = new Set(Object.values(ValueType));

/** Relationship Type (0040,A010) enumerated values, PS3.3 §C.17.3.2.4. */
export const RelationshipType = {
  CONTAINS: 'CONTAINS',
  HAS_PROPERTIES: 'HAS PROPERTIES',
  HAS_OBS_CONTEXT: 'HAS OBS CONTEXT',
  HAS_ACQ_CONTEXT: 'HAS ACQ CONTEXT',
  INFERRED_FROM: 'INFERRED FROM',
  SELECTED_FROM: 'SELECTED FROM',
  HAS_CONCEPT_MOD: 'HAS CONCEPT MOD',
} as const;
export type RelationshipType = (typeof RelationshipType)[keyof typeof RelationshipType];
const RELATIONSHIP_TYPES: ReadonlySet<string> = new Set(Object.values(RelationshipType));

export function isRelationshipType(v: unknown): v is RelationshipType {
  return typeof v === 'string' && RELATIONSHIP_TYPES.has(v);
}
export function isValueType(v: unknown): v is ValueType {
  return typeof v === 'string' && VALUE_TYPES.has(v);
}

/** Continuity Of Content (0040,A050), PS3.3 §C.18.8.1.1. */
export const ContinuityOfContent = { SEPARATE: 'SEPARATE', CONTINUOUS: 'CONTINUOUS' } as const;
export type ContinuityOfContent = (typeof ContinuityOfContent)[keyof typeof ContinuityOfContent];

/** Code Sequence Macro item (PS3.3 Table 8.8-1). */
export function codeToItem(c: Code): NaturalDataset {
  return {
    // Values over 16 characters go in Long Code Value (0008,0119, UC), PS3.3 §8.8.
    ...(c.value.length > 16 ? { LongCodeValue: c.value } : { CodeValue: c.value }),
    CodingSchemeDesignator: c.scheme,
    ...(c.schemeVersion === undefined ? {} : { CodingSchemeVersion: c.schemeVersion }),
    CodeMeaning: c.meaning,
  };
}

/** Options shared by all content items. */
export interface ContentItemOptions {
  /** Concept Name Code Sequence (0040,A043). */
  readonly name: Code;
  /** Relationship to the parent; absent only on the root (PS3.3 §C.17.3.2.4). */
  readonly relationshipType?: RelationshipType;
  /** Content Sequence (0040,A730): every child must carry a relationship type. */
  readonly children?: readonly ContentItem[];
}

/** Base of every content item: concept name, relationship to parent, children. */
export abstract class ContentItem {
  abstract readonly valueType: ValueType | 'BY REFERENCE';
  readonly name: Code | undefined;
  readonly relationshipType: RelationshipType | undefined;
  readonly children: readonly ContentItem[];

  protected constructor(
    what: string,
    opts: {
      name?: Code | undefined;
      relationshipType?: RelationshipType | undefined;
      children?: readonly ContentItem[] | undefined;
    },
    nameRequired: boolean,
  ) {
    if (opts.name === undefined) {
      // Concept Name Code Sequence is Type 1C: required for all value types except IMAGE/COMPOSITE/
      // WAVEFORM/SCOORD/TCOORD (PS3.3 §C.17.3, Table C.17-6 "Document Relationship Macro").
      if (nameRequired) throw new SrValidationError(`${what}: name (Concept Name Code Sequence) is required`);
      this.name = undefined;
    } else {
      this.name = assertCode(`${what} name`, opts.name);
    }
    if (opts.relationshipType !== undefined && !isRelationshipType(opts.relationshipType)) {
      throw new SrValidationError(
        `${what}: relationshipType "${String(opts.relationshipType)}" is not a PS3.3 §C.17.3.2.4 value`,
      );
    }
    this.relationshipType = opts.relationshipType;
    const children = opts.children ?? [];
    if (!Array.isArray(children)) throw new SrValidationError(`${what}: children must be an array`);
    children.forEach((child, i) => {
      if (!(child instanceof ContentItem)) throw new SrValidationError(`${what}: children[${i}] is not a ContentItem`);
      if (child.relationshipType === undefined) {
        throw new SrValidationError(`${what}: children[${i}] has no relationshipType`);
      }
    });
    this.children = Object.freeze([...children]);
  }

  /** Value attributes specific to the value type (e.g. Text Value). */
  protected abstract valueAttributes(): NaturalDataset;

  /** Naturalized content item for dcmjs, children included. */
  toDataset(): NaturalDataset {
    const ds: NaturalDataset = {};
    if (this.relationshipType !== undefined) ds.RelationshipType = this.relationshipType;
    if (this.valueType !== 'BY REFERENCE') ds.ValueType = this.valueType;
    if (this.name !== undefined) ds.ConceptNameCodeSequence = [codeToItem(this.name)];
    Object.assign(ds, this.valueAttributes());
    if (this.children.length > 0) ds.ContentSequence = this.children.map((c) => c.toDataset());
    return ds;
  }
}

function checkUid(what: string, uid: unknown): string {
  if (!isValidUid(uid))
    throw new SrValidationError(`${what} must be a valid UID (PS3.5 §9.1), got ${JSON.stringify(uid)}`);
  return uid;
}

/** CONTAINER (PS3.3 §C.18.8): a heading that groups its children. */
export class ContainerContentItem extends ContentItem {
  readonly valueType = ValueType.CONTAINER;
  readonly continuityOfContent: ContinuityOfContent;
  /** Template Identifier (0040,DB00) of a Content Template Sequence on this container (DCMR). */
  readonly templateIdentifier: string | undefined;

  constructor(
    opts: Omit<ContentItemOptions, 'name'> & {
      /** Required on the root; optional on nested containers. */
      name?: Code;
      continuityOfContent?: ContinuityOfContent;
      templateIdentifier?: string;
    },
  ) {
    // Concept name is required on the root (document title) and on headings; a non-root CONTAINER
    // may be unnamed (PS3.3 Table C.17-6 note on Type 1C), as in DCMTK's test-SR.dcm.
    super('ContainerContentItem', opts, opts.relationshipType === undefined);
    const c = opts.continuityOfContent ?? ContinuityOfContent.SEPARATE;
    if (c !== ContinuityOfContent.SEPARATE && c !== ContinuityOfContent.CONTINUOUS) {
      throw new SrValidationError(
        `ContainerContentItem: continuityOfContent "${String(c)}" must be SEPARATE or CONTINUOUS`,
      );
    }
    this.continuityOfContent = c;
    if (opts.templateIdentifier !== undefined && !/^[0-9]{1,16}$/.test(opts.templateIdentifier)) {
      throw new SrValidationError('ContainerContentItem: templateIdentifier must be a DCMR TID number');
    }
    this.templateIdentifier = opts.templateIdentifier;
  }

  protected valueAttributes(): NaturalDataset {
    return {
      ContinuityOfContent: this.continuityOfContent,
      ...(this.templateIdentifier === undefined
        ? {}
        : {
            // Content Template Sequence (PS3.3 Table C.18.8-1, Template Identification Macro Table 9-17).
            ContentTemplateSequence: [
              {
                MappingResource: 'DCMR',
                MappingResourceUID: MappingResource.Dcmr,
                TemplateIdentifier: this.templateIdentifier,
              },
            ],
          }),
    };
  }
}

/**
 * UT (PS3.5 Table 6.2-1) admits graphic characters plus CR, LF, FF and (for ISO 2022 code
 * extensions, which ISO_IR 192 does not use) ESC; TAB is tolerated by every reader we know. Anything
 * else from C0, DEL and C1 is rejected by TextContentItem, and {@link sanitizeUnlimitedText} replaces it.
 */
/** UT length limit: 2^32 − 2 bytes (PS3.5 Table 6.2-1). */
const UT_MAX_BYTES = 0xfffffffe;

/**
 * Normalise untrusted (model) text for a UT value: control characters outside CR/LF/FF/TAB and lone
 * surrogates become U+FFFD (visible, so a reader sees that something was dropped), trailing whitespace
 * is removed (UT trailing spaces are insignificant padding, PS3.5 §6.2). The builder uses this on
 * model output so a stray control byte degrades one character instead of failing the job;
 * TextContentItem itself rejects such text, so a hand-built tree cannot smuggle it in.
 */
export function sanitizeUnlimitedText(text: string): string {
  return replaceForbiddenUt(text).trimEnd();
}

/** TEXT (PS3.3 §C.17.3.2.x): Text Value (0040,A160), VR UT. */
export class TextContentItem extends ContentItem {
  readonly valueType = ValueType.TEXT;
  readonly value: string;

  constructor(opts: ContentItemOptions & { value: string }) {
    super('TextContentItem', opts, true);
    const v = opts.value;
    if (typeof v !== 'string') throw new SrValidationError('TextContentItem: value must be a string');
    // Trailing spaces are padding in UT (PS3.5 §6.2) and do not survive a round trip: drop them here.
    const trimmed = v.trimEnd();
    if (trimmed.length === 0) throw new SrValidationError('TextContentItem: value must be non-empty');
    const bad = firstForbiddenUtIndex(trimmed);
    if (bad >= 0) {
      const cp = trimmed.charCodeAt(bad).toString(16).toUpperCase().padStart(4, '0');
      throw new SrValidationError(
        `TextContentItem: value contains a character not allowed in UT (U+${cp} at index ${bad})`,
      );
    }
    if (Buffer.byteLength(trimmed, 'utf8') > UT_MAX_BYTES)
      throw new SrValidationError('TextContentItem: value exceeds the UT length limit');
    this.value = trimmed;
  }

  protected valueAttributes(): NaturalDataset {
    return { TextValue: this.value };
  }
}

/** CODE: Concept Code Sequence (0040,A168). */
export class CodeContentItem extends ContentItem {
  readonly valueType = ValueType.CODE;
  readonly value: Code;

  constructor(opts: ContentItemOptions & { value: Code }) {
    super('CodeContentItem', opts, true);
    this.value = assertCode('CodeContentItem value', opts.value);
  }

  protected valueAttributes(): NaturalDataset {
    return { ConceptCodeSequence: [codeToItem(this.value)] };
  }
}

/** UIDREF: UID (0040,A124). */
export class UidRefContentItem extends ContentItem {
  readonly valueType = ValueType.UIDREF;
  readonly value: string;

  constructor(opts: ContentItemOptions & { value: string }) {
    super('UidRefContentItem', opts, true);
    this.value = checkUid('UidRefContentItem value', opts.value);
  }

  protected valueAttributes(): NaturalDataset {
    return { UID: this.value };
  }
}

/** NUM: Measured Value Sequence (0040,A300) with one numeric value and its UCUM unit (PS3.3 Table C.18.1-1). */
export class NumContentItem extends ContentItem {
  readonly valueType = ValueType.NUM;
  /** Undefined when the Measured Value Sequence is empty (allowed: Type 2, PS3.3 Table C.18.1-1). */
  readonly value: number | undefined;
  readonly unit: Code | undefined;

  constructor(opts: ContentItemOptions & { value: number | undefined; unit?: Code }) {
    super('NumContentItem', opts, true);
    if (opts.value !== undefined) {
      if (typeof opts.value !== 'number' || !Number.isFinite(opts.value)) {
        throw new SrValidationError('NumContentItem: value must be a finite number');
      }
      this.unit = assertCode('NumContentItem unit', opts.unit);
    } else {
      this.unit = undefined;
    }
    this.value = opts.value;
  }

  protected valueAttributes(): NaturalDataset {
    if (this.value === undefined || this.unit === undefined) return { MeasuredValueSequence: [] };
    return {
      MeasuredValueSequence: [{ NumericValue: this.value, MeasurementUnitsCodeSequence: [codeToItem(this.unit)] }],
    };
  }
}

/** PNAME: Person Name (0040,A123), Alphabetic component group only. */
export class PnameContentItem extends ContentItem {
  readonly valueType = ValueType.PNAME;
  readonly value: string;

  constructor(opts: ContentItemOptions & { value: string }) {
    super('PnameContentItem', opts, true);
    if (typeof opts.value !== 'string' || opts.value.length === 0) {
      throw new SrValidationError('PnameContentItem: value must be a non-empty string');
    }
    this.value = opts.value;
  }

  protected valueAttributes(): NaturalDataset {
    return { PersonName: [{ Alphabetic: this.value }] };
  }
}

/** IMAGE: Referenced SOP Sequence (0008,1199) with one image and optional frames (PS3.3 Table 10-3 Image SOP Instance Reference Macro). */
export class ImageContentItem extends ContentItem {
  readonly valueType = ValueType.IMAGE;
  readonly referencedSopClassUid: string;
  readonly referencedSopInstanceUid: string;
  /** Referenced Frame Number (0008,1160), 1-based (PS3.3 Table 10-3); empty means the whole image. */
  readonly frameNumbers: readonly number[];

  constructor(opts: {
    name?: Code;
    relationshipType?: RelationshipType;
    children?: readonly ContentItem[];
    referencedSopClassUid: string;
    referencedSopInstanceUid: string;
    frameNumbers?: readonly number[];
  }) {
    // Concept name is optional for IMAGE (Type 1C in Table C.17-6 only for the listed value types).
    super('ImageContentItem', opts, false);
    this.referencedSopClassUid = checkUid('ImageContentItem referencedSopClassUid', opts.referencedSopClassUid);
    this.referencedSopInstanceUid = checkUid(
      'ImageContentItem referencedSopInstanceUid',
      opts.referencedSopInstanceUid,
    );
    const frames = opts.frameNumbers ?? [];
    for (const f of frames) {
      if (!Number.isInteger(f) || f < 1 || f > 2147483647) {
        throw new SrValidationError(`ImageContentItem: frameNumbers must be positive integers, got ${String(f)}`);
      }
    }
    this.frameNumbers = Object.freeze([...frames]);
  }

  protected valueAttributes(): NaturalDataset {
    return {
      ReferencedSOPSequence: [
        {
          ReferencedSOPClassUID: this.referencedSopClassUid,
          ReferencedSOPInstanceUID: this.referencedSopInstanceUid,
          ...(this.frameNumbers.length > 0 ? { ReferencedFrameNumber: [...this.frameNumbers] } : {}),
        },
      ],
    };
  }
}

/**
 * Any other value type (DATE, TIME, DATETIME, COMPOSITE, WAVEFORM, SCOORD, SCOORD3D, TCOORD, TABLE),
 * read from foreign SRs. Keeps the value attributes as read so the item can be rendered and rewritten;
 * RadScribe never builds these.
 */
export class OtherContentItem extends ContentItem {
  readonly valueType: ValueType;
  readonly attributes: Readonly<NaturalDataset>;

  constructor(opts: {
    valueType: ValueType;
    name?: Code;
    relationshipType?: RelationshipType;
    children?: readonly ContentItem[];
    attributes: NaturalDataset;
  }) {
    super('OtherContentItem', opts, false);
    if (!isValueType(opts.valueType))
      throw new SrValidationError(`OtherContentItem: unknown valueType ${String(opts.valueType)}`);
    this.valueType = opts.valueType;
    this.attributes = Object.freeze({ ...opts.attributes });
  }

  protected valueAttributes(): NaturalDataset {
    return { ...this.attributes };
  }
}

/**
 * A by-reference relationship (PS3.3 §C.17.3.2.5): Referenced Content Item Identifier (0040,DB73)
 * names the target by its position path (1-based) instead of nesting it.
 */
export class ReferencedContentItem extends ContentItem {
  readonly valueType = 'BY REFERENCE' as const;
  readonly referencedContentItemIdentifier: readonly number[];

  constructor(opts: { relationshipType: RelationshipType; referencedContentItemIdentifier: readonly number[] }) {
    super('ReferencedContentItem', { relationshipType: opts.relationshipType }, false);
    const ids = opts.referencedContentItemIdentifier;
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every((n) => Number.isInteger(n) && n >= 1)) {
      throw new SrValidationError(
        'ReferencedContentItem: referencedContentItemIdentifier must be a non-empty list of positive integers',
      );
    }
    if (opts.relationshipType === undefined)
      throw new SrValidationError('ReferencedContentItem: relationshipType is required');
    this.referencedContentItemIdentifier = Object.freeze([...ids]);
  }

  protected valueAttributes(): NaturalDataset {
    return { ReferencedContentItemIdentifier: [...this.referencedContentItemIdentifier] };
  }
}
