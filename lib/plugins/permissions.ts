/**
 * Permissions: what a plugin asks for in its manifest, what its trust list entry grants, and the
 * sandbox options that follow. Deny by default: a plugin gets exactly what it requested, and only if
 * the grant covers every request; anything requested and not granted refuses the load.
 *
 * String forms (manifest `permissions`, trust entry `permissions`):
 *   fs:read:/abs/path    the path is bound read-only at the same place inside the sandbox
 *   fs:write:/abs/path   bound read-write (the sandbox's uid must be able to write it on the host)
 *   net:connect:HOST[:PORT]  connections to HOST (a name, *.wildcard, IP or CIDR) on PORT (a number, a
 *                        range, or any when omitted), made by the host for the sandbox (lib/net)
 *   net:outbound         any public destination, under the same rules (closed addresses stay closed)
 *   net:host             the host's network is shared (no network namespace; inet sockets allowed):
 *                        the old meaning of net:outbound; the trust list must grant it by name
 *   sys:exec             the plugin may run programs (execve); without it a stacked seccomp filter forbids exec
 *
 * A grant of a directory covers requests for paths under it; fs:write covers fs:read of the same tree.
 * Coverage is decided on locations, not text: paths must be in normal form (no '..', '.', '//' or
 * trailing '/'), and a requested path must have no symlink in it (checked at every load, and again
 * by the kernel at every spawn, which never follows one in a bind source): a plugin with fs:write
 * could otherwise point a path under its grant anywhere, for another plugin or its own next start.
 */
import * as path from 'node:path';

import { symlinkComponent } from '../sandbox/bind-path';

import { grantCovers, parseGrant, type NetGrant } from '../net/grants';
import type { NetworkOptions } from '../net/policy';
import type { BindMount } from '../sandbox/types';
import { PermissionDeniedError } from './errors';

export type Permission =
  | { kind: 'fs:read'; path: string }
  | { kind: 'fs:write'; path: string }
  | { kind: 'net:connect'; grant: NetGrant }
  | { kind: 'net:outbound' }
  | { kind: 'net:host' }
  | { kind: 'sys:exec' };

export const PERMISSION_KINDS = ['fs:read', 'fs:write', 'net:connect', 'net:outbound', 'net:host', 'sys:exec'] as const;

export function permissionToString(p: Permission): string {
  if (p.kind === 'net:connect') return `net:connect:${p.grant.text}`;
  return p.kind === 'fs:read' || p.kind === 'fs:write' ? `${p.kind}:${p.path}` : p.kind;
}

/** Parses one permission string; throws an Error saying what is wrong. */
export function parsePermission(s: string): Permission {
  if (s === 'net:outbound' || s === 'net:host' || s === 'sys:exec') return { kind: s };
  if (s.startsWith('net:connect:')) return { kind: 'net:connect', grant: parseGrant(s.slice('net:connect:'.length)) };
  const m = /^(fs:read|fs:write):(.*)$/s.exec(s);
  if (m === null) throw new Error(`'${s.slice(0, 100)}' is not a permission; use one of fs:read:/path, fs:write:/path, net:connect:HOST[:PORT], net:outbound, net:host, sys:exec`);
  const p = m[2]!;
  if (!path.isAbsolute(p)) throw new Error(`${m[1]} needs an absolute path, got '${p.slice(0, 100)}'`);
  if (p.includes('\0') || p.length > 4096) throw new Error(`${m[1]}: the path has a NUL byte or is too long`);
  // A path with '..' or '//' could be made to look narrower than it is; demand the normal form.
  if (path.posix.normalize(p) !== p || (p.length > 1 && p.endsWith('/'))) throw new Error(`${m[1]}: '${p}' is not a normalized path (no '..', '.', '//' or trailing '/')`);
  return { kind: m[1] as 'fs:read' | 'fs:write', path: p };
}

function within(child: string, parent: string): boolean {
  if (parent === '/') return true;
  return child === parent || child.startsWith(parent + '/');
}

/** True if `grant` covers `request`. */
export function covers(grant: Permission, request: Permission): boolean {
  if (request.kind === 'net:outbound' || request.kind === 'net:host' || request.kind === 'sys:exec') return grant.kind === request.kind;
  if (request.kind === 'net:connect') {
    // net:outbound covers names (any public destination); only an IP/CIDR grant covers an IP/CIDR
    // request, which may open a closed range.
    if (grant.kind === 'net:outbound') return request.grant.kind !== 'cidr';
    return grant.kind === 'net:connect' && grantCovers(grant.grant, request.grant);
  }
  if (grant.kind !== 'fs:read' && grant.kind !== 'fs:write') return false;
  if (request.kind === 'fs:write' && grant.kind !== 'fs:write') return false;
  return within(request.path, grant.path);
}

export interface PermissionDecision {
  /** What the plugin will have: its requests, each covered by a grant. */
  effective: Permission[];
  /** For the audit log: each request and the grant that covered it. */
  decisions: Array<{ permission: string; grantedBy: string }>;
}

/**
 * Checks every request against the grants. Throws PermissionDeniedError for the first request no
 * grant covers (or a malformed grant string: the trust list is then wrong, and nothing is guessed).
 */
export function decidePermissions(plugin: string, requested: readonly Permission[], granted: readonly string[]): PermissionDecision {
  const grants: Permission[] = granted.map((g) => {
    try {
      return parsePermission(g);
    } catch (e) {
      throw new PermissionDeniedError(plugin, g, `is granted in a form this host does not understand (${(e as Error).message})`);
    }
  });
  const decisions: PermissionDecision['decisions'] = [];
  for (const r of requested) {
    const g = grants.find((x) => covers(x, r));
    if (g === undefined) throw new PermissionDeniedError(plugin, permissionToString(r), 'the trust list does not grant');
    // In normal form and free of symlinks, a path under the grant's text is under the grant's location.
    const link = r.kind === 'fs:read' || r.kind === 'fs:write' ? symlinkComponent(r.path) : undefined;
    if (link !== undefined) {
      throw new PermissionDeniedError(plugin, permissionToString(r), `is not a real path: '${link.component}' is a symlink (to '${link.to}'), which a sandbox that can write there could point anywhere`, 'grant and request the real path');
    }
    decisions.push({ permission: permissionToString(r), grantedBy: permissionToString(g) });
  }
  return { effective: [...requested], decisions };
}

export interface PermissionSandboxOptions {
  binds: BindMount[];
  shareNet: boolean;
  /** The network policy, when net:connect or net:outbound is effective (and net:host is not). */
  network: NetworkOptions | undefined;
  allowExec: boolean;
}

/** The network budget a policy gets (the plugin's limits of those names). */
export interface NetworkBudget {
  connectionsPerMinute?: number;
  maxConnections?: number;
}

/** The sandbox options the effective permissions translate to. */
export function sandboxOptionsFor(effective: readonly Permission[], budget: NetworkBudget = {}): PermissionSandboxOptions {
  const binds: BindMount[] = [];
  for (const p of effective) {
    if (p.kind === 'fs:read' || p.kind === 'fs:write') {
      // fs:write wins when both name the same path.
      const existing = binds.find((b) => b.source === p.path);
      if (existing !== undefined) existing.writable = existing.writable === true || p.kind === 'fs:write';
      else binds.push({ source: p.path, target: p.path, writable: p.kind === 'fs:write' });
    }
  }
  const shareNet = effective.some((p) => p.kind === 'net:host');
  const allow = effective.flatMap((p) => (p.kind === 'net:connect' ? [p.grant.text] : []));
  const outbound = effective.some((p) => p.kind === 'net:outbound');
  return {
    binds,
    shareNet,
    network: shareNet || (allow.length === 0 && !outbound) ? undefined : { allow, outbound, ...budgetOf(budget) },
    allowExec: effective.some((p) => p.kind === 'sys:exec'),
  };
}

function budgetOf(b: NetworkBudget): NetworkBudget {
  const out: NetworkBudget = {};
  // 0 in a trust list reads as "none": the policy's counts must be at least 1, and a policy that
  // allows no connection at all is no policy (the ceiling is where network is taken away).
  if (b.connectionsPerMinute !== undefined && b.connectionsPerMinute > 0) out.connectionsPerMinute = b.connectionsPerMinute;
  if (b.maxConnections !== undefined && b.maxConnections > 0) out.maxConnections = b.maxConnections;
  return out;
}
