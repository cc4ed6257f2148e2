/**
 * `warden top --url URL --token T`: a terminal view of a host's plugins, like `docker stats`, read
 * from the host's dashboard (its /api/usage). Text that a plugin can influence is printed with its
 * control and bidi characters escaped, so it cannot move the cursor, recolour the terminal or
 * reorder what is shown.
 */
import type { HostUsage, PluginUsage } from '../metrics';
import { terminalSafe } from '../terminal-text';

const USAGE = `usage: warden top --url URL --token TOKEN [--interval SECONDS] [--once]

Shows the plugins of a running host, refreshed every --interval seconds (default 2), from its
dashboard (PluginHost dashboard option, or host.dashboard.listen()).

  --url URL        the dashboard's address, http://127.0.0.1:PORT (a ?token=... in it is used too)
  --token TOKEN    the dashboard's token; default: $WARDEN_DASHBOARD_TOKEN
  --once           print once and exit

Exit status: 0; 1 the host cannot be reached or refused the token; 2 a bad option.
`;

/**
 * The dashboard's JSON is another process's word (whatever answers at --url): every cell is
 * escaped text or a number checked to be one, and a shape that is not a usage report is refused.
 */
function clean(s: unknown): string {
  return terminalSafe(String(s ?? '–'));
}

function num(x: unknown, digits = 0, scale = 1): string {
  return typeof x === 'number' && Number.isFinite(x) ? (x * scale).toFixed(digits) : '–';
}

function mib(b: unknown): string {
  return typeof b === 'number' && Number.isFinite(b) ? `${(b / 1048576).toFixed(1)}MiB` : '–';
}

const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null;

export function formatTop(u: HostUsage): string {
  if (!isObject(u) || !Array.isArray(u.plugins) || !isObject(u.host)) throw new TypeError('the answer is not a usage report (plugins and host missing)');
  const head = ['NAME', 'STATUS', 'CPU %', 'MEM / LIMIT', 'MEM %', 'PIDS', 'CALLS', 'ERRORS', 'P99 MS', 'VIOLATIONS', 'RESTARTS', 'WARNINGS'];
  const row = (p: PluginUsage): string[] => {
    const o = (x: unknown): Record<string, unknown> => (isObject(x) ? x : {});
    const cpu = o(p?.cpu), memory = o(p?.memory), pids = o(p?.pids), calls = o(p?.calls);
    const violations = Object.values(o(p?.violations)).reduce<number>((a, b) => a + (typeof b === 'number' ? b : 0), 0);
    const bytes = memory.bytes, limit = memory.limitBytes;
    return [
      clean(p?.name), clean(p?.status),
      num(cpu.cores, 1, 100),
      `${mib(bytes)} / ${mib(limit)}`,
      typeof bytes === 'number' && typeof limit === 'number' ? num(bytes / limit, 1, 100) : '–',
      num(pids.current), num(calls.total), num(calls.errors),
      num(calls.p99Ms, 1),
      num(violations), num(p?.restarts), clean((Array.isArray(p?.pressure) ? p.pressure.join(',') : '') || '–'),
    ];
  };
  const rows = [head, ...u.plugins.map(row)];
  const widths = head.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const h = u.host as unknown as Record<string, unknown>;
  const byStatus = isObject(h.byStatus) ? h.byStatus : {};
  const pool = isObject(h.pool) ? h.pool : undefined;
  const summary = `${u.plugins.length} plugins, ${num(h.sandboxes)} sandboxes, ${num(byStatus.failed ?? 0)} failed, ${num(byStatus.quarantined ?? 0)} quarantined; ` +
    `violations 24h: ${num(h.violations24h)}, critical 24h: ${num(h.critical24h)}${pool ? `; warm pool: ${num(pool.idle)} idle` : ''}`;
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
    let text: string;
    try {
      text = formatTop((await res.json()) as HostUsage);
    } catch (e) {
      process.stderr.write(`warden top: ${endpoint.origin}: ${terminalSafe((e as Error).message)}\n`);
      return 1;
    }
    process.stdout.write(tty ? `\u001b[H\u001b[2J${text}` : text);
    if (once) return 0;
    await new Promise((r) => setTimeout(r, interval * 1000));
  }
}
