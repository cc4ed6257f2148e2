/**
 * `warden top --url URL --token T`: a terminal view of a host's plugins, like `docker stats`, read
 * from the host's dashboard (its /api/usage). Text that a plugin can influence is printed with its
 * control characters replaced, so it cannot move the cursor or recolour the terminal.
 */
import type { HostUsage, PluginUsage } from '../metrics';

const USAGE = `usage: warden top --url URL --token TOKEN [--interval SECONDS] [--once]

Shows the plugins of a running host, refreshed every --interval seconds (default 2), from its
dashboard (PluginHost dashboard option, or host.dashboard.listen()).

  --url URL        the dashboard's address, http://127.0.0.1:PORT (a ?token=... in it is used too)
  --token TOKEN    the dashboard's token; default: $WARDEN_DASHBOARD_TOKEN
  --once           print once and exit

Exit status: 0; 1 the host cannot be reached or refused the token; 2 a bad option.
`;

function clean(s: unknown): string {
  return String(s ?? '–').replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

function mib(b: number | undefined): string {
  return b === undefined ? '–' : `${(b / 1048576).toFixed(1)}MiB`;
}

export function formatTop(u: HostUsage): string {
  const head = ['NAME', 'STATUS', 'CPU %', 'MEM / LIMIT', 'MEM %', 'PIDS', 'CALLS', 'ERRORS', 'P99 MS', 'VIOLATIONS', 'RESTARTS', 'WARNINGS'];
  const row = (p: PluginUsage): string[] => [
    clean(p.name), clean(p.status),
    p.cpu.cores === undefined ? '–' : (p.cpu.cores * 100).toFixed(1),
    `${mib(p.memory.bytes)} / ${mib(p.memory.limitBytes)}`,
    p.memory.bytes === undefined || p.memory.limitBytes === undefined ? '–' : ((p.memory.bytes / p.memory.limitBytes) * 100).toFixed(1),
    clean(p.pids.current), String(p.calls.total), String(p.calls.errors),
    p.calls.p99Ms === undefined ? '–' : p.calls.p99Ms.toFixed(1),
    String(Object.values(p.violations).reduce((a, b) => a + b, 0)), String(p.restarts), clean(p.pressure.join(',') || '–'),
  ];
  const rows = [head, ...u.plugins.map(row)];
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const h = u.host;
  const summary = `${u.plugins.length} plugins, ${h.sandboxes} sandboxes, ${h.byStatus.failed ?? 0} failed, ${h.byStatus.quarantined ?? 0} quarantined; ` +
    `violations 24h: ${h.violations24h}, critical 24h: ${h.critical24h}${h.pool ? `; warm pool: ${h.pool.idle} idle` : ''}`;
  return `${summary}\n\n${rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n')}\n`;
}

export async function top(args: string[]): Promise<number> {
  let url: string | undefined;
  let token = process.env.WARDEN_DASHBOARD_TOKEN;
  let interval = 2;
  let once = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE);
      return 0;
    } else if (a === '--url') url = args[++i];
    else if (a === '--token') token = args[++i];
    else if (a === '--interval') interval = Number(args[++i]);
    else if (a === '--once') once = true;
    else {
      process.stderr.write(`warden top: unknown option '${a}'\n\n${USAGE}`);
      return 2;
    }
  }
  let base: URL;
  try {
    base = new URL(url ?? '');
  } catch {
    process.stderr.write(`warden top: --url must be the dashboard's address, like http://127.0.0.1:8080\n\n${USAGE}`);
    return 2;
  }
  token ??= base.searchParams.get('token') ?? undefined;
  if (token === undefined || token === '') {
    process.stderr.write('warden top: --token (or $WARDEN_DASHBOARD_TOKEN) is required\n');
    return 2;
  }
  if (!(interval >= 0.2)) {
    process.stderr.write('warden top: --interval must be at least 0.2 seconds\n');
    return 2;
  }
  const endpoint = new URL('/api/usage', base);
  const tty = process.stdout.isTTY === true && !once;
  for (;;) {
    let res: Response;
    try {
      res = await fetch(endpoint, { headers: { authorization: `Bearer ${token}` } });
    } catch (e) {
      process.stderr.write(`warden top: cannot reach ${endpoint.origin}: ${(e as Error).message}\n`);
      return 1;
    }
    if (res.status !== 200) {
      process.stderr.write(`warden top: ${endpoint.origin} answered ${res.status}${res.status === 401 ? ' (wrong token)' : ''}\n`);
      return 1;
    }
    const text = formatTop((await res.json()) as HostUsage);
    process.stdout.write(tty ? `\u001b[H\u001b[2J${text}` : text);
    if (once) return 0;
    await new Promise((r) => setTimeout(r, interval * 1000));
  }
}
