import { SopClass, TransferSyntax } from '../dicom/uids.js';
import { aeTitleProblem } from './ae-title.js';
import type { DicomTlsClientConfig } from './dicom-tls.js';
import { CommandField, encodeCEchoRq, parseResponse } from './dimse-command.js';
import { AssociationFailure, isDimseAssociationError, RequestorAssociation } from './requestor.js';

/**
 * C-ECHO SCU (Verification, PS3.4 Annex A, requestor side of PS3.8 §9.2, on requestor.ts):
 * associate with one presentation context (Verification, Implicit VR Little Endian), send
 * C-ECHO-RQ, read the C-ECHO-RSP, release. Reports each step's outcome and the round-trip times.
 */

export interface EchoTarget {
  readonly host: string;
  readonly port: number;
  readonly calledAeTitle: string;
}

export interface EchoResult {
  readonly ok: boolean;
  /** What happened, for the operator: "success", "rejected (…)", "aborted (…)", "timeout", … */
  readonly outcome: string;
  /** DIMSE status of the C-ECHO-RSP, when one came. */
  readonly status?: number;
  /** Connect → A-ASSOCIATE-AC. */
  readonly associateMs?: number;
  /** C-ECHO-RQ sent → C-ECHO-RSP read. */
  readonly echoMs?: number;
  /** Connect → connection closed after release. */
  readonly totalMs: number;
}

/** `host:port:AET` (AET may be omitted: ANY-SCP, DCMTK's default). */
export function parseEchoTarget(s: string): EchoTarget {
  const m = /^(\[[^\]]+\]|[^:]+):(\d{1,5})(?::(.+))?$/.exec(s);
  if (!m) throw new Error(`expected host:port:AET, got "${s}"`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} out of range`);
  const calledAeTitle = m[3] ?? 'ANY-SCP';
  const why = aeTitleProblem(calledAeTitle);
  if (why) throw new Error(`called AE title: ${why}`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port, calledAeTitle };
}

export async function echo(
  target: EchoTarget,
  opts: { callingAeTitle?: string; timeoutMs?: number; tls?: DicomTlsClientConfig } = {},
): Promise<EchoResult> {
  const calling = opts.callingAeTitle ?? 'RADSCRIBE';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const t0 = performance.now();
  const ms = (t: number): number => Math.round((t - t0) * 100) / 100;
  let associateAt: number | undefined;
  let echoMs: number | undefined;
  let status: number | undefined;
  const result = (ok: boolean, outcome: string): EchoResult => ({
    ok,
    outcome,
    ...(status !== undefined ? { status } : {}),
    ...(associateAt !== undefined ? { associateMs: ms(associateAt) } : {}),
    ...(echoMs !== undefined ? { echoMs } : {}),
    totalMs: ms(performance.now()),
  });
  let assoc: RequestorAssociation | undefined;
  try {
    assoc = await RequestorAssociation.open({
      host: target.host,
      port: target.port,
      calledAeTitle: target.calledAeTitle,
      callingAeTitle: calling,
      presentationContexts: [
        { id: 1, abstractSyntax: SopClass.Verification, transferSyntaxes: [TransferSyntax.ImplicitVrLittleEndian] },
      ],
      timeouts: { connectMs: timeoutMs, artimMs: timeoutMs, dimseMs: timeoutMs },
      ...(opts.tls ? { tls: opts.tls } : {}),
    });
    associateAt = performance.now();
    if (!assoc.accepted.has(1)) {
      assoc.abort();
      return result(false, `Verification presentation context refused (result ${assoc.resultOf(1) ?? 'missing'})`);
    }
    const sentAt = performance.now();
    const rsp = parseResponse((await assoc.request(1, encodeCEchoRq(1, SopClass.Verification))).command);
    if (rsp.commandField !== CommandField.CEchoRsp) {
      assoc.abort();
      return result(false, `unexpected response 0x${rsp.commandField.toString(16)}`);
    }
    echoMs = Math.round((performance.now() - sentAt) * 100) / 100;
    status = rsp.status;
    await assoc.release();
    return result(status === 0, status === 0 ? 'success' : `status 0x${status.toString(16)}`);
  } catch (err: unknown) {
    assoc?.abort();
    if (!isDimseAssociationError(err)) throw err;
    // A response in hand counts even if the release then failed (the echo itself went through).
    if (status !== undefined) return result(status === 0, status === 0 ? 'success' : `status 0x${status.toString(16)}`);
    switch (err.failure) {
      case AssociationFailure.ConnectTimeout:
      case AssociationFailure.ArtimTimeout:
      case AssociationFailure.ResponseTimeout:
        return result(false, `timeout after ${timeoutMs} ms`);
      case AssociationFailure.ProtocolError:
        return result(false, `malformed answer: ${err.message}`);
      case AssociationFailure.TlsRefused:
        return result(false, `TLS refused: ${err.message}`);
      default:
        return result(false, err.message);
    }
  }
}
