/**
 * `warden doctor`: what this host offers and what warden will degrade or refuse because of it.
 * Exit 0 when nothing is refused, 1 otherwise.
 */
import { hostReport } from '../sandbox/host-report';
import { NAMESPACES } from '../sandbox/types';
import { cgroupReport, deadHostCgroups, formatCgroupReport, type LeftoverCgroup } from '../limits';
import { buildPlan, releasePreparedMounts } from '../sandbox/plan';
import { checkRange, hostIdReport, type HostIdReport } from '../sandbox/ids';
import { networkReport } from '../sandbox/network-report';

/**
 * Whether spawns clone a prepared root (a root host on a kernel with what it needs), found by
 * preparing the default mount list once. Without it every spawn builds its root: slower, as safe.
 */
function preparedRootReport(root: boolean): { template: boolean; templateNamespace: boolean; reason: string } {
  if (!root) return { template: false, templateNamespace: false, reason: 'an unprivileged host builds each root per spawn' };
  try {
    const set = buildPlan({ command: ['/bin/true'] }).plan.mountSet!;
    return { template: set.template, templateNamespace: set.templateNamespace, reason: set.noTemplateReason };
  } catch (e) {
    return { template: false, templateNamespace: false, reason: (e as Error).message };
  } finally {
    releasePreparedMounts();
  }
}

function leftoverText(l: LeftoverCgroup): string {
  const what = `leftover sandbox cgroup ${l.path} of host pid ${l.hostPid}`;
  switch (l.outcome) {
    case 'removed': return `${what}: removed (its host is gone)`;
    case 'removable': return `${what}: its host is gone; \`warden doctor --clean\` removes it`;
    case 'host-alive': return `${what}: kept, a process with that pid is alive`;
    case 'has-processes': return `${what}: kept, it still holds ${l.detail}`;
    case 'failed': return `${what}: could not be removed (${l.detail})`;
  }
}

export async function doctorCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write('usage: warden doctor [--json] [--clean]\n\nWhat this host offers (namespaces, seccomp, cgroups, Landlock) and what warden will degrade or refuse.\n--clean  remove the empty sandbox cgroups of hosts that died (under this process\'s own cgroups)\n');
    return 0;
  }
  const unknown = args.filter((a) => a !== '--json' && a !== '--clean');
  if (unknown.length > 0) {
    process.stderr.write(`warden doctor: unknown option '${unknown[0]}' (--json, --clean)\n`);
    return 2;
  }
  const r = hostReport();
  // Leftovers of hosts that died without their teardown; --clean removes the empty ones.
  const leftovers = deadHostCgroups(args.includes('--clean'));
  for (const l of leftovers) r.findings.push({ level: 'info', text: leftoverText(l) });
  // Which limits this host enforces, found by creating (and removing) one probe cgroup per limit.
  const limits = await cgroupReport();
  for (const [limit, state] of Object.entries(limits.limits)) {
    if (state !== 'ok') r.findings.push({ level: 'degraded', text: `limits.${limit} fails closed (allowDegraded substitutes rlimits): ${state}` });
  }
  const preparedRoot = preparedRootReport(r.root);
  // As root each sandbox runs as a host uid/gid of its own from this range (lib/sandbox/ids.ts).
  let hostIds: HostIdReport | undefined;
  if (r.root) {
    try {
      hostIds = hostIdReport(process.env.WARDEN_HOST_IDS === undefined ? undefined : checkRange('WARDEN_HOST_IDS', process.env.WARDEN_HOST_IDS));
      if (hostIds.subidOverlaps.length > 0) r.findings.push({ level: 'degraded', text: `the host id range ${hostIds.range} overlaps subordinate ids (${hostIds.subidOverlaps.join('; ')}): a container of that user could share a sandbox's uid; choose another range (WARDEN_HOST_IDS, hostIds)` });
    } catch (e) {
      r.findings.push({ level: 'refused', text: `host ids: ${(e as Error).message}` });
    }
  } else {
    r.findings.push({ level: 'degraded', text: `unprivileged: every sandbox maps to uid ${process.getuid?.()} and shares its per-user kernel counts (processes, inotify instances, message queues) with the other sandboxes and with this process; as root each gets a host uid of its own` });
  }
  if (r.root && !preparedRoot.templateNamespace) {
    r.findings.push({ level: 'degraded', text: `spawns are slower: ${preparedRoot.template ? 'no template mount namespace' : 'no prepared root'} (${preparedRoot.reason}); each spawn builds more of its root` });
  }
  const network = await networkReport();
  if (network.mechanism === 'none') r.findings.push({ level: 'degraded', text: `network policies (net:connect, --allow-net) cannot be enforced: ${network.reason}; sandboxes that ask for one fail to start` });
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify({ ...r, limits, preparedRoot, hostIds, leftoverCgroups: leftovers, network }, null, 2)}\n`);
  } else {
    const yes = (b: boolean) => (b ? 'yes' : 'no');
    const lines = [
      `kernel            ${r.kernel}`,
      `running as        ${r.root ? 'root' : `uid ${process.getuid?.()} (unprivileged)`}`,
      ...NAMESPACES.map((n) => `${`${n} namespace`.padEnd(18)}${r.namespaces[n].available ? 'yes' : `no (${r.namespaces[n].error})`}`),
      `unprivileged userns ${r.unprivilegedUserNamespaces.allowed ? 'allowed' : `no: ${r.unprivilegedUserNamespaces.reason}`}`,
      `seccomp           ${yes(r.seccomp.available)}; actions: ${r.seccomp.actions.join(' ') || 'unknown'}; user notification: ${yes(r.seccomp.userNotification)}`,
      `cgroups           ${r.cgroups.layout}${r.cgroups.v2Path ? ` (v2 at ${r.cgroups.v2Path}: ${r.cgroups.v2Controllers.join(' ') || 'no controllers'})` : ''}${r.cgroups.v1Controllers.length ? `; v1: ${r.cgroups.v1Controllers.join(' ')}` : ''}`,
      ...formatCgroupReport(limits).trimEnd().split('\n'),
      `landlock          ${r.landlock.abi === null ? `no (${r.landlock.reason})` : `ABI ${r.landlock.abi}`}`,
      `mount_setattr     ${yes(r.launcher.mountSetattr)}`,
      `close_range       ${yes(r.launcher.closeRange)}`,
      `host ids          ${hostIds === undefined ? (r.root ? 'invalid range (see below)' : 'the caller\'s (unprivileged)') : `${hostIds.range} (${hostIds.count} uids and gids, one per live sandbox; ${hostIds.named} named in /etc/passwd or /etc/group, skipped; ${hostIds.blocksHeldElsewhere} block(s) of 1024 held by other processes)`}`,
      `network policy    ${network.mechanism === 'none' ? `no (${network.reason})` : `yes: ${network.mechanism} (${network.reason})`}`,
      `prepared root     ${preparedRoot.templateNamespace ? 'yes (template mount namespace)' : preparedRoot.template ? `template only (${preparedRoot.reason})` : `no (${preparedRoot.reason})`}`,
      '',
      ...r.findings.map((f) => `${f.level.toUpperCase().padEnd(9)} ${f.text}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return r.findings.some((f) => f.level === 'refused') ? 1 : 0;
}
