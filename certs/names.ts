/**
 * Argument checks for names that end up inside certificates. Each throws a CertError naming
 * the argument, so `portico certs issue --san 'a b'` says which value is wrong and why.
 */
import { isIP } from 'node:net';
import { CertError, CertErrorCodes } from './errors.ts';

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/**
 * Lower-cases and checks a DNS name for a dNSName SAN (RFC 5280 4.2.1.6, RFC 1123 labels).
 * A wildcard is allowed only as the whole left-most label of a name with at least two more
 * labels (`*.example.com`), as RFC 6125 6.4.3 clients expect.
 */
export function checkDnsName(name: string, what = 'DNS name'): string {
  const lower = name.trim().toLowerCase().replace(/\.$/, '');
  const labels = lower.split('.');
  const wildcard = labels[0] === '*';
  const ok =
    lower.length > 0 &&
    lower.length <= 253 &&
    (!wildcard || labels.length >= 3) &&
    labels.every((label, i) => (i === 0 && wildcard) || LABEL.test(label));
  if (!ok) throw badArg(`${what} '${name}' is not a valid DNS name (letters, digits, '-', dots; optional leading '*.')`);
  return lower;
}

/** Checks an IPv4/IPv6 literal for an iPAddress SAN. */
export function checkIp(ip: string, what = 'IP address'): string {
  const trimmed = ip.trim();
  if (isIP(trimmed) === 0) throw badArg(`${what} '${ip}' is not an IPv4 or IPv6 address`);
  return trimmed;
}

/** Checks a finite, positive number (days, hours). */
export function checkPositive(value: number, what: string): number {
  if (!Number.isFinite(value) || value <= 0) throw badArg(`${what} must be a positive number, got ${String(value)}`);
  return value;
}

/** Checks a non-empty single-line string for a distinguished-name attribute. */
export function checkDnValue(value: string, what: string): string {
  if (value.length === 0 || value.length > 64 || /[\r\n\0]/.test(value)) {
    throw badArg(`${what} must be 1-64 characters on one line, got '${value}'`);
  }
  return value;
}

export function badArg(message: string): CertError {
  return new CertError(CertErrorCodes.BAD_ARGUMENT, message);
}
