/**
 * IP addresses: strict parsing and the classes that stay closed whatever a grant says.
 *
 * Parsing is strict on purpose: an IPv4 address is four decimal parts (`127.0.0.1`); the other forms
 * that inet_aton accepts (`2130706433`, `0x7f000001`, `127.1`, `0177.0.0.1`) are recognised and
 * reported as what they are, so a grant or a DNS name can never be such a form by accident. An IPv6
 * address embedding an IPv4 one (`::ffff:127.0.0.1`, `::127.0.0.1`, `64:ff9b::7f00:1`,
 * `2002:7f00:1::`) is classified by the IPv4 address inside.
 */
import * as net from 'node:net';

export type IpFamily = 4 | 6;

export interface Ip {
  readonly family: IpFamily;
  /** The address as an integer: 32 bits for IPv4, 128 for IPv6. */
  readonly value: bigint;
  /** The canonical text (net.isIP form). */
  readonly text: string;
}

/** Why an address is closed unless an explicit IP or CIDR grant opens it; null for a public address. */
export type AddressClass =
  | 'loopback' | 'private' | 'cgnat' | 'link-local' | 'metadata' | 'unique-local' | 'multicast'
  | 'unspecified' | 'broadcast' | 'reserved' | null;

/** True for the numeric IPv4 forms other than dotted decimal that inet_aton accepts. */
export function isOtherIpv4Form(s: string): boolean {
  // One to four parts, each decimal, octal (leading 0) or hex (0x), dot-separated; not all four decimal.
  const parts = s.split('.');
  if (parts.length < 1 || parts.length > 4) return false;
  if (!parts.every((p) => /^(0x[0-9a-f]*|[0-9]+)$/i.test(p))) return false;
  return !(parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255));
}

export function parseIp(s: string): Ip | null {
  const family = net.isIP(s);
  if (family === 4) {
    if (!/^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}$/.test(s)) return null; // no leading zeros
    const value = s.split('.').reduce((acc, p) => (acc << 8n) | BigInt(Number(p)), 0n);
    return { family: 4, value, text: s };
  }
  if (family === 6) {
    if (s.includes('%')) return null; // zone ids name an interface of this host
    return { family: 6, value: ipv6Value(s), text: s.toLowerCase() };
  }
  return null;
}

function ipv6Value(s: string): bigint {
  let str = s.toLowerCase();
  // A trailing dotted IPv4 part becomes two hex groups.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(str);
  if (v4 !== null) {
    const n = v4[1]!.split('.').reduce((acc, p) => acc * 256 + Number(p), 0);
    str = str.slice(0, -v4[1]!.length) + ((n >>> 16).toString(16)) + ':' + ((n & 0xffff).toString(16));
  }
  const [head, tail] = str.includes('::') ? str.split('::') as [string, string] : [str, undefined];
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

export function formatIp(family: IpFamily, value: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((sh) => String((value >> sh) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((value >> BigInt(i * 16)) & 0xffffn).toString(16));
  // Let Node compress it.
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/** The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), or null. */
export function embeddedIpv4(ip: Ip): Ip | null {
  if (ip.family !== 6) return null;
  const v = ip.value;
  const low32 = v & 0xffffffffn;
  const make = (x: bigint): Ip => ({ family: 4, value: x, text: formatIp(4, x) });
  if (v >> 32n === 0xffffn) return make(low32); // ::ffff:a.b.c.d
  if (v >> 32n === 0n && low32 > 1n) return make(low32); // ::a.b.c.d (deprecated compatible form)
  if (v >> 32n === 0x0064ff9b0000000000000000n) return make(low32); // 64:ff9b::/96 NAT64
  if (v >> 112n === 0x2002n) return make((v >> 80n) & 0xffffffffn); // 2002:AABB:CCDD::/48 6to4
  return null;
}

interface Range { family: IpFamily; base: bigint; bits: number; cls: Exclude<AddressClass, null> }
const r = (cidr: string, cls: Exclude<AddressClass, null>): Range => {
  const [a, b] = cidr.split('/') as [string, string];
  const ip = parseIp(a)!;
  return { family: ip.family, base: ip.value, bits: Number(b), cls };
};

// Order matters: the first containing range names the class (metadata before link-local).
const CLOSED: readonly Range[] = [
  r('169.254.169.254/32', 'metadata'), r('168.63.129.16/32', 'metadata'), r('100.100.100.200/32', 'metadata'),
  r('fd00:ec2::254/128', 'metadata'),
  r('0.0.0.0/8', 'unspecified'), r('127.0.0.0/8', 'loopback'), r('10.0.0.0/8', 'private'),
  r('172.16.0.0/12', 'private'), r('192.168.0.0/16', 'private'), r('100.64.0.0/10', 'cgnat'),
  r('169.254.0.0/16', 'link-local'), r('224.0.0.0/4', 'multicast'), r('255.255.255.255/32', 'broadcast'),
  r('240.0.0.0/4', 'reserved'), r('192.0.0.0/24', 'reserved'),
  r('::/128', 'unspecified'), r('::1/128', 'loopback'), r('fe80::/10', 'link-local'), r('fec0::/10', 'link-local'),
  r('fc00::/7', 'unique-local'), r('ff00::/8', 'multicast'),
];

export function inCidr(ip: Ip, family: IpFamily, base: bigint, bits: number): boolean {
  if (ip.family !== family) return false;
  const width = family === 4 ? 32 : 128;
  const shift = BigInt(width - bits);
  return ip.value >> shift === base >> shift;
}

/** The class that keeps `ip` closed, or null if it is a public address. */
export function classify(ip: Ip): AddressClass {
  const inner = embeddedIpv4(ip);
  if (inner !== null) return classify(inner);
  for (const range of CLOSED) if (inCidr(ip, range.family, range.base, range.bits)) return range.cls;
  return null;
}
