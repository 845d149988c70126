import net from 'node:net';
import { SopClass } from '../dicom/uids.js';

/**
 * Who may associate with a local AE and what it may send (issue 11 "Application entities"): the
 * calling hosts as IP addresses or CIDR blocks, and the SOP classes accepted at presentation-context
 * negotiation. The checks are pure; storage-scp.ts applies them and chooses the PS3.8 answers.
 */

/** Why `value` is not an IP address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`), or undefined. */
export function hostPatternProblem(value: string): string | undefined {
  const [addr, bits, extra] = value.split('/');
  if (extra !== undefined || addr === undefined) return 'must be an IP address or a CIDR block (address/bits)';
  const family = net.isIP(addr);
  if (family === 0) return 'must be an IP address or a CIDR block (address/bits); host names are not resolved';
  if (bits === undefined) return undefined;
  const max = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(bits) || Number(bits) > max) return `prefix length must be an integer from 0 to ${max}`;
  return undefined;
}

/** An IPv4 peer reached over a dual-stack socket shows as ::ffff:a.b.c.d; match it as IPv4. */
function plainAddress(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m?.[1] ?? address;
}

/** A matcher for validated host patterns (hostPatternProblem() undefined for each). */
export function hostMatcher(patterns: readonly string[]): (address: string) => boolean {
  const list = new net.BlockList();
  for (const p of patterns) {
    const [addr = '', bits] = p.split('/');
    const type = net.isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    if (bits === undefined) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(bits), type);
  }
  return (address: string): boolean => {
    const a = plainAddress(address);
    const family = net.isIP(a);
    if (family === 0) return false;
    return list.check(a, family === 6 ? 'ipv6' : 'ipv4');
  };
}

/**
 * Why `value` is not a UID (PS3.5 §9.1: at most 64 characters, components of digits separated by
 * dots, no component with a leading zero unless it is 0 itself), or undefined.
 */
export function uidProblem(value: string): string | undefined {
  if (value.length === 0 || value.length > 64) return 'must be 1 to 64 characters';
  if (!/^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$/.test(value))
    return 'must be digits in dot-separated components without leading zeros (PS3.5 §9.1)';
  return undefined;
}

/**
 * Whether a proposed abstract syntax is allowed by a listener's `allowedSopClasses` (absent = any
 * the SCP supports). Verification is always allowed: C-ECHO is how a peer and an operator check the
 * association itself, and it carries no data (PS3.4 Annex A).
 */
export function sopClassAllowed(allowed: readonly string[] | undefined, abstractSyntax: string): boolean {
  if (allowed === undefined || abstractSyntax === SopClass.Verification) return true;
  return allowed.includes(abstractSyntax);
}
