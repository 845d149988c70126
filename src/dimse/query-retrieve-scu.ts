import { QrSopClass, TransferSyntax } from '../dicom/uids.js';
import type { DicomTlsClientConfig } from './dicom-tls.js';
import type { EncodableCharacterSet } from './identifier.js';
import type { PresentationContextRq } from './pdu.js';
import { RequestorAssociation, type RequestorTimeouts } from './requestor.js';

/**
 * The Query/Retrieve SCU side (PS3.4 Annex C, Study Root Information Model): one association with a
 * presentation context per service used, on the shared requestor (requestor.ts). C-FIND
 * (find-scu.ts) and C-MOVE (move-scu.ts) run on it one after the other (no asynchronous operations
 * window is proposed, PS3.7 D.3.3.3); each request gets the next Message ID.
 */

export { QrSopClass };

/** Query/Retrieve Level (0008,0052) values RadScribe uses (PS3.4 C.6.2.1). */
export const QueryLevel = { Study: 'STUDY', Series: 'SERIES' } as const;
export type QueryLevel = (typeof QueryLevel)[keyof typeof QueryLevel];

/** Identifier syntaxes proposed for each Q/R context: Explicit VR LE first, Implicit (the default) as fallback. */
const QR_TRANSFER_SYNTAXES = [TransferSyntax.ExplicitVrLittleEndian, TransferSyntax.ImplicitVrLittleEndian];

/** A remote Q/R SCP and how to reach it. */
export interface QrPeer {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
  readonly callingAeTitle: string;
  readonly tls?: DicomTlsClientConfig | undefined;
  readonly timeouts?: Partial<RequestorTimeouts> | undefined;
  /** Specific Character Set for non-ASCII query text (identifier.ts); default: ISO_IR 100 or 192 as needed. */
  readonly characterSet?: EncodableCharacterSet | undefined;
}

/** One open Q/R association: the requestor, which contexts were accepted, and the Message ID counter. */
export class QrAssociation {
  #nextMessageId = 1;
  private constructor(
    readonly assoc: RequestorAssociation,
    readonly peer: QrPeer,
    readonly contextOf: ReadonlyMap<QrSopClass, { id: number; transferSyntax: string }>,
  ) {}

  /** Associate proposing one context per SOP class in `services` (IDs 1, 3, 5, …, PS3.8 §9.3.2.2). */
  static async open(peer: QrPeer, services: readonly QrSopClass[]): Promise<QrAssociation> {
    const contexts: PresentationContextRq[] = services.map((abstractSyntax, i) => ({
      id: 2 * i + 1,
      abstractSyntax,
      transferSyntaxes: QR_TRANSFER_SYNTAXES,
    }));
    const assoc = await RequestorAssociation.open({
      host: peer.host,
      port: peer.port,
      calledAeTitle: peer.calledAeTitle,
      callingAeTitle: peer.callingAeTitle,
      presentationContexts: contexts,
      ...(peer.timeouts ? { timeouts: peer.timeouts } : {}),
      ...(peer.tls ? { tls: peer.tls } : {}),
    });
    const contextOf = new Map<QrSopClass, { id: number; transferSyntax: string }>();
    for (const c of contexts) {
      const a = assoc.accepted.get(c.id);
      if (a) contextOf.set(c.abstractSyntax as QrSopClass, { id: c.id, transferSyntax: a.transferSyntax });
    }
    return new QrAssociation(assoc, peer, contextOf);
  }

  nextMessageId(): number {
    const id = this.#nextMessageId;
    this.#nextMessageId = (this.#nextMessageId % 0xffff) + 1;
    return id;
  }

  release(): Promise<void> {
    return this.assoc.release();
  }

  abort(): void {
    this.assoc.abort();
  }
}

/**
 * Run `fn` on a fresh association proposing `services`; released after, aborted when `fn` throws
 * (a half-read response must not be left for the next request).
 */
export async function withQrAssociation<T>(
  peer: QrPeer,
  services: readonly QrSopClass[],
  fn: (a: QrAssociation) => Promise<T>,
): Promise<T> {
  const a = await QrAssociation.open(peer, services);
  let result: T;
  try {
    result = await fn(a);
  } catch (err: unknown) {
    a.abort();
    throw err;
  }
  // A failed release loses nothing: the answers are in hand.
  await a.release().catch(() => undefined);
  return result;
}
