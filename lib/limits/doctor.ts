/**
 * What `warden doctor` says about cgroups: the layout, where sandboxes would go, which limits are
 * enforceable and how teardown kills. It creates (and removes) one probe cgroup to be sure.
 */
import * as path from 'node:path';
import { LimitError } from '../errors';
import { readText } from './cgroupfs';
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
  const lines = [`cgroups: ${r.mode}${r.v2Mount ? ` (cgroup2 at ${r.v2Mount})` : ''}`];
  if (r.v1Controllers.length > 0) lines.push(`  v1 controllers: ${r.v1Controllers.join(' ')}`);
  if (r.ownV2 !== undefined) {
    const ctl = (readText(path.join(r.ownV2, 'cgroup.controllers')) ?? '').trim();
    lines.push(`  own cgroup2: ${r.ownV2} (controllers: ${ctl || 'none'})`);
  }
  for (const [c, d] of Object.entries(r.ownV1)) lines.push(`  own ${c}: ${d}`);
  for (const [l, s] of Object.entries(r.limits)) lines.push(`  ${l.padEnd(8)} ${s}`);
  lines.push(`  teardown: ${r.killMethod ?? 'unavailable'}`);
  for (const w of r.weaker) lines.push(`  weaker: ${w}`);
  return lines.join('\n') + '\n';
}
