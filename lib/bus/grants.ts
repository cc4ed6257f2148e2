/**
 * Bus grants: what a plugin may do on the bus, as strings in its manifest (`provides`, `consumes`)
 * and in its trust list entry (`permissions`, beside fs:/net:/sys: ones). Deny by default: a plugin
 * gets exactly what its manifest declares, and only if the trust entry grants each declaration.
 *
 *   events:publish:TOPIC          publish on TOPIC                      (manifest `provides`)
 *   service:provide:NAME          answer calls to the service NAME      (manifest `provides`)
 *   events:subscribe:TOPIC        receive what is published on TOPIC    (manifest `consumes`)
 *   service:call:PLUGIN/NAME      call PLUGIN's service NAME            (manifest `consumes`)
 *   data:read:OWNER/PREFIX        read OWNER's keys starting with PREFIX (manifest `consumes`)
 *   data:write:OWNER/PREFIX       write (set, delete) them; covers data:read of the same keys
 *
 * A plugin reads and writes its own keys (OWNER = itself) without a grant. Topics and services are
 * exact names (no wildcards: a grant says exactly what it opens). PREFIX may be empty (the whole
 * namespace of OWNER). PLUGIN and OWNER are plugin names, `@scope/name` included.
 */
import { isValidPluginName } from '../trust/document';

/** Topic and service names: no ':' or '/', so a grant string has one reading. */
export const BUS_NAME_RE = /^[a-z][a-zA-Z0-9_.-]{0,127}$/;
/** The rest of a data key after `OWNER/`: printable, no empty segment, at most 256 characters. */
const KEY_RE = /^[A-Za-z0-9_.:@~-]+(\/[A-Za-z0-9_.:@~-]+)*$/;
const MAX_KEY = 256;

export type BusGrant =
  | { kind: 'events:publish' | 'events:subscribe'; topic: string }
  | { kind: 'service:provide'; service: string }
  | { kind: 'service:call'; plugin: string; service: string }
  | { kind: 'data:read' | 'data:write'; owner: string; prefix: string };

const PROVIDES = new Set(['events:publish', 'service:provide']);
const CONSUMES = new Set(['events:subscribe', 'service:call', 'data:read', 'data:write']);
const FORMS = 'events:publish:TOPIC, events:subscribe:TOPIC, service:provide:NAME, service:call:PLUGIN/NAME, data:read:OWNER/PREFIX, data:write:OWNER/PREFIX';

/** True for the strings this module parses (a trust entry's other permissions go elsewhere). */
export function isBusGrant(s: string): boolean {
  return /^(events|service|data):/.test(s);
}

/** Splits `OWNER/REST` where OWNER may be `@scope/name`; undefined if there is no owner part. */
export function splitOwner(s: string): { owner: string; rest: string } | undefined {
  const first = s.indexOf('/');
  if (first < 0) return undefined;
  const cut = s.startsWith('@') ? s.indexOf('/', first + 1) : first;
  if (cut < 0) return undefined;
  return { owner: s.slice(0, cut), rest: s.slice(cut + 1) };
}

/** Keys are names, not paths; still, '.' and '..' segments would read like paths to a person or a tool: refused. */
function dotSegment(s: string): boolean {
  return s.split('/').some((c) => c === '.' || c === '..');
}

/** Checks a data key (`OWNER/key`); returns its parts or throws a TypeError saying what is wrong. */
export function parseDataKey(key: unknown, what = 'key'): { owner: string; rest: string } {
  if (typeof key !== 'string' || key.length > 214 + 1 + MAX_KEY) throw new TypeError(`${what} must be a string 'OWNER/key'`);
  const p = splitOwner(key);
  if (p === undefined || !isValidPluginName(p.owner)) throw new TypeError(`${what} '${key.slice(0, 100)}' must start with a plugin name and '/' (OWNER/key)`);
  if (!KEY_RE.test(p.rest) || p.rest.length > MAX_KEY || dotSegment(p.rest)) throw new TypeError(`${what} '${key.slice(0, 100)}': the key after '${p.owner}/' must be 1-${MAX_KEY} characters of A-Z a-z 0-9 _ . : @ ~ - in '/'-separated segments, none of them '.' or '..'`);
  return p;
}

/** Parses one bus grant; throws an Error naming what is wrong and the forms there are. */
export function parseBusGrant(s: string): BusGrant {
  const m = /^(events:publish|events:subscribe|service:provide|service:call|data:read|data:write):(.*)$/s.exec(s);
  if (m === null) throw new Error(`'${s.slice(0, 100)}' is not a bus grant; use one of ${FORMS}`);
  const kind = m[1] as BusGrant['kind'];
  const arg = m[2]!;
  if (kind === 'events:publish' || kind === 'events:subscribe') {
    if (!BUS_NAME_RE.test(arg)) throw new Error(`${kind}: '${arg.slice(0, 100)}' is not a topic (${BUS_NAME_RE}, no wildcards)`);
    return { kind, topic: arg };
  }
  if (kind === 'service:provide') {
    if (!BUS_NAME_RE.test(arg)) throw new Error(`service:provide: '${arg.slice(0, 100)}' is not a service name (${BUS_NAME_RE})`);
    return { kind, service: arg };
  }
  const p = splitOwner(arg);
  if (p === undefined || !isValidPluginName(p.owner)) throw new Error(`${kind}: '${arg.slice(0, 100)}' must be ${kind === 'service:call' ? 'PLUGIN/NAME' : 'OWNER/PREFIX'} with a valid plugin name`);
  if (kind === 'service:call') {
    if (!BUS_NAME_RE.test(p.rest)) throw new Error(`service:call: '${p.rest.slice(0, 100)}' is not a service name (${BUS_NAME_RE})`);
    return { kind, plugin: p.owner, service: p.rest };
  }
  // An empty prefix is the whole namespace; otherwise the prefix must be a key or the start of one.
  if (p.rest !== '' && (!/^[A-Za-z0-9_.:@~/-]+$/.test(p.rest) || p.rest.startsWith('/') || p.rest.includes('//') || p.rest.length > MAX_KEY || dotSegment(p.rest))) {
    throw new Error(`${kind}: the prefix '${p.rest.slice(0, 100)}' must be empty or the start of a key (A-Z a-z 0-9 _ . : @ ~ - /, no '.' or '..' segment)`);
  }
  return { kind, owner: p.owner, prefix: p.rest };
}

export function busGrantToString(g: BusGrant): string {
  switch (g.kind) {
    case 'events:publish':
    case 'events:subscribe':
      return `${g.kind}:${g.topic}`;
    case 'service:provide':
      return `${g.kind}:${g.service}`;
    case 'service:call':
      return `${g.kind}:${g.plugin}/${g.service}`;
    default:
      return `${g.kind}:${g.owner}/${g.prefix}`;
  }
}

/** Parses a manifest's `provides` or `consumes` list; throws an Error naming the index. */
export function parseDeclarations(list: unknown, field: 'provides' | 'consumes'): BusGrant[] {
  if (list === undefined) return [];
  if (!Array.isArray(list)) throw Object.assign(new Error(`must be an array of strings like ${field === 'provides' ? '"events:publish:orders.created"' : '"events:subscribe:orders.created"'}`), { field });
  if (list.length > 256) throw Object.assign(new Error('lists more than 256 entries'), { field });
  const allowed = field === 'provides' ? PROVIDES : CONSUMES;
  return list.map((s: unknown, i) => {
    const f = `${field}[${i}]`;
    if (typeof s !== 'string') throw Object.assign(new Error('must be a string'), { field: f });
    let g: BusGrant;
    try {
      g = parseBusGrant(s);
    } catch (e) {
      throw Object.assign(new Error((e as Error).message), { field: f });
    }
    if (!allowed.has(g.kind)) throw Object.assign(new Error(`${g.kind} belongs in \`${field === 'provides' ? 'consumes' : 'provides'}\``), { field: f });
    return g;
  });
}

/** True if `grant` covers `request`. data:write covers data:read; a prefix covers longer ones. */
export function busCovers(grant: BusGrant, request: BusGrant): boolean {
  if (request.kind === 'data:read' || request.kind === 'data:write') {
    if (grant.kind !== 'data:write' && !(grant.kind === 'data:read' && request.kind === 'data:read')) return false;
    return grant.owner === request.owner && request.prefix.startsWith(grant.prefix);
  }
  return busGrantToString(grant) === busGrantToString(request);
}

/**
 * The bus grants of one plugin as the trust list grants them: for every declaration, the grant that
 * covers it; the first one not covered is returned as `missing` (the load is refused, naming it).
 */
export function decideBusGrants(declared: readonly BusGrant[], granted: readonly string[]): { effective: BusGrant[]; missing?: string; malformed?: { grant: string; why: string } } {
  const grants: BusGrant[] = [];
  for (const s of granted) {
    if (!isBusGrant(s)) continue;
    try {
      grants.push(parseBusGrant(s));
    } catch (e) {
      return { effective: [], malformed: { grant: s, why: (e as Error).message } };
    }
  }
  for (const d of declared) {
    if (!grants.some((g) => busCovers(g, d))) return { effective: [], missing: busGrantToString(d) };
  }
  return { effective: [...declared] };
}

/** What one plugin may do, as the bus checks it on every message. */
export class BusRights {
  constructor(readonly plugin: string, readonly grants: readonly BusGrant[]) {}

  mayPublish(topic: string): boolean {
    return this.grants.some((g) => g.kind === 'events:publish' && g.topic === topic);
  }

  maySubscribe(topic: string): boolean {
    return this.grants.some((g) => g.kind === 'events:subscribe' && g.topic === topic);
  }

  mayProvide(service: string): boolean {
    return this.grants.some((g) => g.kind === 'service:provide' && g.service === service);
  }

  mayCall(plugin: string, service: string): boolean {
    return this.grants.some((g) => g.kind === 'service:call' && g.plugin === plugin && g.service === service);
  }

  /** Own keys always; another owner's only under a grant whose prefix the key (or list prefix) starts with. */
  mayData(access: 'read' | 'write', owner: string, keyOrPrefix: string): boolean {
    if (owner === this.plugin) return true;
    return this.grants.some((g) => (g.kind === 'data:write' || (g.kind === 'data:read' && access === 'read')) && g.owner === owner && keyOrPrefix.startsWith(g.prefix));
  }
}
