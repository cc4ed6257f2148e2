/**
 * What this host offers a sandbox, asked of the kernel: the facts behind `warden doctor`. The cgroup
 * layout is the one lib/limits detected and uses, so doctor cannot describe another.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { hostLayout, type CgroupMode } from '../limits/layout';
import { addon } from '../native';
import { NAMESPACES, type NamespaceName } from './types';

export interface HostReport {
  kernel: string;
  root: boolean;
  namespaces: Record<NamespaceName, { available: boolean; error?: string }>;
  unprivilegedUserNamespaces: { allowed: boolean; reason: string };
  seccomp: { available: boolean; actions: string[]; userNotification: boolean };
  landlock: { abi: number | null; reason?: string };
  cgroups: { layout: CgroupMode; v2Path: string | null; v1Controllers: string[]; v2Controllers: string[] };
  launcher: { mountSetattr: boolean; closeRange: boolean };
  /** What warden will refuse or degrade on this host, in words. */
  findings: Array<{ level: 'ok' | 'info' | 'degraded' | 'refused'; text: string }>;
}

interface Probe {
  namespaces: Record<NamespaceName, number>;
  seccompMode: number;
  seccompUserNotif: boolean;
  seccompKillProcess: boolean;
  landlockAbi: number;
  mountSetattr: boolean;
  closeRange: boolean;
}

function read(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}

function errnoName(n: number): string {
  return Object.entries(os.constants.errno).find(([, v]) => v === n)?.[0] ?? `errno ${n}`;
}

function cgroups(): HostReport['cgroups'] {
  const layout = hostLayout();
  const v2Path = layout.v2?.mountPoint ?? null;
  const v2Controllers = v2Path === null ? [] : (read(`${v2Path}/cgroup.controllers`) ?? '').split(' ').filter(Boolean);
  return { layout: layout.mode, v2Path, v1Controllers: [...layout.v1.keys()].sort(), v2Controllers };
}

export function hostReport(): HostReport {
  const probe = addon().probe as () => Probe;
  const p = probe();
  const root = process.getuid?.() === 0;
  const namespaces = {} as HostReport['namespaces'];
  for (const n of NAMESPACES) {
    namespaces[n] = p.namespaces[n] === 0 ? { available: true } : { available: false, error: errnoName(p.namespaces[n]) };
  }

  let userns = { allowed: true, reason: 'allowed' };
  if (read('/proc/sys/kernel/unprivileged_userns_clone') === '0') userns = { allowed: false, reason: 'kernel.unprivileged_userns_clone = 0' };
  else if (read('/proc/sys/user/max_user_namespaces') === '0') userns = { allowed: false, reason: 'user.max_user_namespaces = 0' };
  else if (read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1') userns = { allowed: false, reason: 'AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1)' };
  else if (!root && !namespaces.user.available) userns = { allowed: false, reason: `clone(CLONE_NEWUSER) fails: ${namespaces.user.error}` };

  const actions = (read('/proc/sys/kernel/seccomp/actions_avail') ?? '').split(' ').filter(Boolean);
  const seccomp = { available: p.seccompKillProcess, actions, userNotification: p.seccompUserNotif };
  const landlock = p.landlockAbi > 0 ? { abi: p.landlockAbi } : { abi: null, reason: errnoName(-p.landlockAbi) };
  const cg = cgroups();

  const findings: HostReport['findings'] = [];
  for (const n of NAMESPACES) {
    if (!namespaces[n].available) findings.push({ level: 'refused', text: `a sandbox with the ${n} namespace (the default) is refused: clone fails with ${namespaces[n].error}; switch it off explicitly to run without it` });
  }
  if (!root && !userns.allowed) findings.push({ level: 'refused', text: `unprivileged sandboxes are refused: ${userns.reason}; run as root or allow unprivileged user namespaces` });
  if (!seccomp.available) findings.push({ level: 'refused', text: 'seccomp filters are unavailable: every profile but \'none\' is refused' });
  if (seccomp.available && !seccomp.userNotification) findings.push({ level: 'refused', text: 'seccomp user notification is missing (Linux < 5.0): profiles that report violations by name are refused' });
  if (!p.mountSetattr) findings.push({ level: 'refused', text: 'mount_setattr is missing (Linux < 5.12): read-only binds cannot be applied recursively, so the mount namespace is refused' });
  if (!p.closeRange) findings.push({ level: 'refused', text: 'close_range is missing (Linux < 5.11): fd hygiene cannot be guaranteed, so spawning is refused' });
  if (cg.layout === 'none') findings.push({ level: 'refused', text: 'no cgroup filesystem: memory, pids and cpu limits are refused (unless degrading is allowed)' });
  if (cg.layout === 'hybrid') findings.push({ level: 'ok', text: `hybrid cgroups: limits use the v1 controllers (${cg.v1Controllers.join(' ')}); kill and events use the v2 hierarchy at ${cg.v2Path}` });
  if (cg.layout === 'legacy') findings.push({ level: 'degraded', text: 'legacy cgroups (v1 only): teardown freezes then kills, as cgroup.kill is missing' });
  if (landlock.abi === null) findings.push({ level: 'degraded', text: `Landlock is unavailable (${landlock.reason}): not used by warden today, noted for completeness` });
  if (findings.every((f) => f.level !== 'refused')) findings.unshift({ level: 'ok', text: 'every isolation feature warden uses is available' });

  return {
    kernel: os.release(),
    root,
    namespaces,
    unprivilegedUserNamespaces: userns,
    seccomp,
    landlock,
    cgroups: cg,
    launcher: { mountSetattr: p.mountSetattr, closeRange: p.closeRange },
    findings,
  };
}
