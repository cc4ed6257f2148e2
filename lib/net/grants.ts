/**
 * Network grants: `HOST[:PORT]` as in `net:connect:HOST[:PORT]`, `--allow-net HOST[:PORT]` and
 * `network.allow`.
 *
 *   HOST  a DNS name (`api.example.com`), a wildcard (`*.example.com`: any name below, not the
 *         name itself), an IP (`203.0.113.7`, `[2001:db8::1]`) or a CIDR (`203.0.113.0/24`,
 *         `[2001:db8::/32]`); IPv6 in brackets when a port follows
 *   PORT  a number, a range (`8000-8100`) or omitted for any port
 *
 * Only an IP or CIDR grant opens a closed address (loopback, private, link-local, ...): a name grant
 * never does, whatever the name resolves to.
 */
import { classify, inCidr, isOtherIpv4Form, parseIp, type Ip, type IpFamily } from './address';

export type NetGrant =
  | { kind: 'name'; name: string; ports: PortRange | null; text: string }
  | { kind: 'wildcard'; suffix: string; ports: PortRange | null; text: string }
  | { kind: 'cidr'; family: IpFamily; base: bigint; bits: number; ports: PortRange | null; text: string };

export interface PortRange { from: number; to: number }

function parsePort(s: string, whole: string): PortRange {
  const m = /^([0-9]{1,5})(?:-([0-9]{1,5}))?$/.exec(s);
  if (m === null) throw new Error(`'${whole}': the port must be a number or a range like 8000-8100`);
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || to > 65535 || from > to) throw new Error(`'${whole}': ports are 1 to 65535, a range low-high`);
  return { from, to };
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** Parses one grant; throws an Error saying what is wrong and what to write instead. */
export function parseGrant(text: string): NetGrant {
  if (typeof text !== 'string' || text.length === 0 || text.length > 300) throw new Error('a network grant is HOST[:PORT], e.g. api.example.com:443');
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) throw new Error(`'${text}': no closing ']'`);
    host = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest !== '' && !rest.startsWith(':')) throw new Error(`'${text}': expected ':PORT' after ']'`);
    portText = rest === '' ? undefined : rest.slice(1);
  } else {
    const colons = text.split(':').length - 1;
    if (colons > 1) throw new Error(`'${text}': write an IPv6 address in brackets, e.g. [2001:db8::1]:443`);
    [host, portText] = colons === 1 ? (text.split(':') as [string, string]) : [text, undefined];
  }
  const ports = portText === undefined ? null : parsePort(portText, text);
  const slash = host.indexOf('/');
  if (slash >= 0) {
    const ip = parseIp(host.slice(0, slash));
    const bitsText = host.slice(slash + 1);
    if (ip === null) throw new Error(`'${text}': a CIDR is an IP address and a prefix length, e.g. 203.0.113.0/24`);
    const width = ip.family === 4 ? 32 : 128;
    if (!/^[0-9]{1,3}$/.test(bitsText) || Number(bitsText) > width) throw new Error(`'${text}': prefix length 0 to ${width}`);
    const bits = Number(bitsText);
    const mask = ((1n << BigInt(width)) - 1n) >> BigInt(bits);
    if ((ip.value & mask) !== 0n) throw new Error(`'${text}': host bits set below /${bits}; write the network address`);
    return { kind: 'cidr', family: ip.family, base: ip.value, bits, ports, text };
  }
  const ip = parseIp(host);
  if (ip !== null) return { kind: 'cidr', family: ip.family, base: ip.value, bits: ip.family === 4 ? 32 : 128, ports, text };
  if (isOtherIpv4Form(host)) throw new Error(`'${text}': '${host}' is a numeric IPv4 form; write the address as four decimal parts (e.g. 127.0.0.1)`);
  const name = host.toLowerCase().replace(/\.$/, '');
  const wildcard = name.startsWith('*.');
  const labels = (wildcard ? name.slice(2) : name).split('.');
  if (!labels.every((l) => LABEL.test(l))) throw new Error(`'${text}': not a DNS name, IP or CIDR`);
  if (/^[0-9]+$/.test(labels[labels.length - 1]!)) throw new Error(`'${text}': a name's last label cannot be numeric`);
  if (wildcard && labels.length < 2) throw new Error(`'${text}': a wildcard needs a domain of two labels or more, e.g. *.example.com`);
  return wildcard ? { kind: 'wildcard', suffix: labels.join('.'), ports, text } : { kind: 'name', name, ports, text };
}

export function portCovered(ports: PortRange | null, port: number): boolean {
  return ports === null || (port >= ports.from && port <= ports.to);
}

/** True if a name grant (name or wildcard) covers `name` (lower case, no trailing dot). */
export function nameCovered(g: NetGrant, name: string): boolean {
  if (g.kind === 'name') return g.name === name;
  if (g.kind === 'wildcard') return name.endsWith('.' + g.suffix);
  return false;
}

/** True if an IP/CIDR grant covers `ip`:`port`. */
export function ipCovered(g: NetGrant, ip: Ip, port: number): boolean {
  return g.kind === 'cidr' && inCidr(ip, g.family, g.base, g.bits) && portCovered(g.ports, port);
}

/** True if grant `outer` covers every destination of grant `inner` (for permission intersection). */
export function grantCovers(outer: NetGrant, inner: NetGrant): boolean {
  const ports = outer.ports === null || (inner.ports !== null && inner.ports.from >= outer.ports.from && inner.ports.to <= outer.ports.to);
  if (!ports) return false;
  if (outer.kind === 'cidr') return inner.kind === 'cidr' && inner.family === outer.family && inner.bits >= outer.bits && inCidr({ family: inner.family, value: inner.base, text: '' }, outer.family, outer.base, outer.bits);
  if (outer.kind === 'name') return inner.kind === 'name' && inner.name === outer.name;
  return (inner.kind === 'name' && inner.name.endsWith('.' + outer.suffix)) || (inner.kind === 'wildcard' && (inner.suffix === outer.suffix || inner.suffix.endsWith('.' + outer.suffix)));
}

export { classify };
