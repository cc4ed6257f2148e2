/**
 * What `warden doctor` says about cgroups: the layout, where sandboxes would go, which limits are
 * enforceable and how teardown kills. It creates (and removes) one probe cgroup to be sure.
 */
import { LimitError } from '../errors';
import { discoverOwnCgroups } from './discover';
import { hostLayout } from './layout';
import { SandboxCgroup } from './sandbox-cgroup';

export interface CgroupReport {
  mode: string;
  v2Mount?: string;
  v1Controllers: string[];
  ownV2?: string;
  ownV1: Record<string, string>;
  /** limit → 'ok' or why not */
  limits: Record<'memory' | 'pids' | 'cpu' | 'cpuTime', string>;
  killMethod?: string;
  weaker: string[];
}

export async function cgroupReport(): Promise<CgroupReport> {
  const layout = hostLayout();
  let own: ReturnType<typeof discoverOwnCgroups> | undefined;
  try {
    own = discoverOwnCgroups(layout);
  } catch {
    own = undefined;
  }
  const report: CgroupReport = {
    mode: layout.mode,
    v2Mount: layout.v2?.mountPoint,
    v1Controllers: [...layout.v1.keys()].sort(),
    ownV2: own?.v2,
    ownV1: Object.fromEntries(own?.v1 ?? []),
    limits: { memory: '', pids: '', cpu: '', cpuTime: '' },
    weaker: [],
  };
  for (const limit of ['memory', 'pids', 'cpu', 'cpuTime'] as const) {
    const value = { memory: '64M', pids: 16, cpu: 0.5, cpuTime: '1s' }[limit];
    try {
      const cg = SandboxCgroup.create({ [limit]: value });
      report.killMethod ??= cg.killMethod;
      for (const w of cg.weaker) report.weaker.push(`${w.limit}: ${w.reason}`);
      await cg.destroy();
      report.limits[limit] = 'ok';
    } catch (e) {
      report.limits[limit] = e instanceof LimitError ? e.message : String(e);
    }
  }
  return report;
}

export function formatCgroupReport(r: CgroupReport): string {
  const ok = Object.entries(r.limits).filter(([, v]) => v === 'ok').map(([k]) => k);
  const lines = [`cgroup limits     ${ok.length > 0 ? ok.join(' ') : 'none'} enforceable; teardown by ${r.killMethod ?? 'nothing (no cgroup)'}`];
  const parents = [
    ...(r.ownV2 !== undefined ? [`cgroup2 ${r.ownV2}`] : []),
    ...['memory', 'pids', 'cpu', 'cpuacct'].filter((c) => r.ownV1[c] !== undefined).map((c) => `${c} ${r.ownV1[c]}`),
  ];
  if (parents.length > 0) lines.push(`  sandboxes under  ${parents.join(', ')}`);
  for (const [l, s] of Object.entries(r.limits)) if (s !== 'ok') lines.push(`  ${l}: ${s}`);
  for (const w of r.weaker) lines.push(`  weaker ${w}`);
  return lines.join('\n') + '\n';
}
