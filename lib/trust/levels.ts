/**
 * Trust levels as the trust list defines them. A list may carry a `levels` table in its signed
 * part: for each level, the ceiling of permissions an entry of that level may be granted, and the
 * limits its plugins get where their entry names none. The meaning of a permission string belongs to
 * the plugin layer (lib/plugins/levels.ts checks the ceiling); here they are only strings.
 *
 * A list without a table means what lists meant before levels had a meaning: every level may be
 * granted anything and sets no limits (UNLISTED_LEVELS). Its signers never signed a ceiling, so
 * none is invented for them. `warden trust init` writes RECOMMENDED_LEVELS into every new list.
 */
import type { JsonValue } from './canonical';
import { MalformedError } from './errors';

export const TRUST_LEVELS = ['privileged', 'standard', 'restricted'] as const;
/** How much the host trusts a plugin; the list's `levels` table says what that means. */
export type TrustLevel = (typeof TRUST_LEVELS)[number];

/** A ceiling entry that covers every permission. */
export const ANY_PERMISSION = '*';

export interface LevelPolicy {
  /** The ceiling: every permission granted to an entry of this level must be covered by one of these. */
  permissions: string[];
  /** Limits for entries of this level that do not name them (same names and units as entry limits). */
  limits: Record<string, number>;
}

export type LevelTable = Record<TrustLevel, LevelPolicy>;

const MIB = 1024 * 1024;

/** What `warden trust init` writes. Limits in entry units: bytes, millicores, milliseconds. */
export const RECOMMENDED_LEVELS: LevelTable = {
  privileged: { permissions: [ANY_PERMISSION], limits: {} },
  standard: {
    // Files anywhere the entry names them, and public destinations by name; never the host's
    // network, IP/CIDR grants (which open closed ranges) or running programs.
    permissions: ['fs:read:/', 'fs:write:/', 'net:outbound'],
    limits: { memory: 256 * MIB, pids: 64, cpu: 1000, callTimeout: 5000, connectionsPerMinute: 60, maxConnections: 32 },
  },
  restricted: {
    permissions: [],
    limits: { memory: 128 * MIB, pids: 32, cpu: 250, callTimeout: 2000 },
  },
};

/** The meaning of a list that carries no `levels` table: labels only. */
export const UNLISTED_LEVELS: LevelTable = {
  privileged: { permissions: [ANY_PERMISSION], limits: {} },
  standard: { permissions: [ANY_PERMISSION], limits: {} },
  restricted: { permissions: [ANY_PERMISSION], limits: {} },
};

const LIMIT_RE = /^[A-Za-z][A-Za-z0-9_]{0,63}$/;

function fail(where: string, reason: string): never {
  throw new MalformedError(where, reason);
}

function isObject(v: JsonValue | undefined): v is Record<string, JsonValue> {
  return v !== null && v !== undefined && typeof v === 'object' && !Array.isArray(v);
}

/** Checks a limits object: identifier names, non-negative safe integers. */
export function checkLimitTable(raw: JsonValue | undefined, w: string): Record<string, number> {
  if (!isObject(raw)) fail(w, 'must be an object');
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (!LIMIT_RE.test(k)) fail(`${w}.${k}`, 'limit names are identifiers');
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${w}.${k}`, 'must be an integer >= 0');
    out[k] = v;
  }
  return out;
}

/** Checks a `levels` table: exactly the known levels, each { permissions, limits }. */
export function checkLevels(raw: JsonValue | undefined, w: string): LevelTable {
  if (!isObject(raw)) fail(w, 'must be an object');
  for (const k of Object.keys(raw)) if (!(TRUST_LEVELS as readonly string[]).includes(k)) fail(`${w}.${k}`, `unknown trust level; the levels are ${TRUST_LEVELS.join(', ')}`);
  const out = {} as LevelTable;
  for (const level of TRUST_LEVELS) {
    const lw = `${w}.${level}`;
    const o = raw[level];
    if (o === undefined) fail(lw, 'missing: a levels table defines every level');
    if (!isObject(o)) fail(lw, 'must be an object { permissions, limits }');
    for (const k of Object.keys(o)) if (k !== 'permissions' && k !== 'limits') fail(`${lw}.${k}`, 'unknown field');
    if (!Array.isArray(o.permissions)) fail(`${lw}.permissions`, 'must be an array of permission strings ("*" for any)');
    const permissions = o.permissions.map((p, i) => {
      if (typeof p !== 'string' || p.length === 0 || p.length > 256) fail(`${lw}.permissions[${i}]`, 'must be a non-empty string of at most 256 characters');
      return p;
    });
    out[level] = { permissions: [...new Set(permissions)].sort(), limits: checkLimitTable(o.limits, `${lw}.limits`) };
  }
  return out;
}
