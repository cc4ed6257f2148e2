/**
 * `warden doctor`: what this host offers and what warden will degrade or refuse because of it.
 * Exit 0 when nothing is refused, 1 otherwise.
 */
import { hostReport } from '../sandbox/host';
import { NAMESPACES } from '../sandbox/types';

export async function doctorCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write('usage: warden doctor [--json]\n\nWhat this host offers (namespaces, seccomp, cgroups, Landlock) and what warden will degrade or refuse.\n');
    return 0;
  }
  const unknown = args.filter((a) => a !== '--json');
  if (unknown.length > 0) {
    process.stderr.write(`warden doctor: unknown option '${unknown[0]}' (only --json)\n`);
    return 2;
  }
  const r = hostReport();
  if (args.includes('--json')) {
    process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
  } else {
    const yes = (b: boolean) => (b ? 'yes' : 'no');
    const lines = [
      `kernel            ${r.kernel}`,
      `running as        ${r.root ? 'root' : `uid ${process.getuid?.()} (unprivileged)`}`,
      ...NAMESPACES.map((n) => `${`${n} namespace`.padEnd(18)}${r.namespaces[n].available ? 'yes' : `no (${r.namespaces[n].error})`}`),
      `unprivileged userns ${r.unprivilegedUserNamespaces.allowed ? 'allowed' : `no: ${r.unprivilegedUserNamespaces.reason}`}`,
      `seccomp           ${yes(r.seccomp.available)}; actions: ${r.seccomp.actions.join(' ') || 'unknown'}; user notification: ${yes(r.seccomp.userNotification)}`,
      `cgroups           ${r.cgroups.layout}${r.cgroups.v2Path ? ` (v2 at ${r.cgroups.v2Path}: ${r.cgroups.v2Controllers.join(' ') || 'no controllers'})` : ''}${r.cgroups.v1Controllers.length ? `; v1: ${r.cgroups.v1Controllers.join(' ')}` : ''}`,
      `landlock          ${r.landlock.abi === null ? `no (${r.landlock.reason})` : `ABI ${r.landlock.abi}`}`,
      `mount_setattr     ${yes(r.launcher.mountSetattr)}`,
      `close_range       ${yes(r.launcher.closeRange)}`,
      '',
      ...r.findings.map((f) => `${f.level.toUpperCase().padEnd(9)} ${f.text}`),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  return r.findings.some((f) => f.level === 'refused') ? 1 : 0;
}
