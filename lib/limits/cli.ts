/**
 * The limit flags of `warden run`: --memory 256M --pids 64 --cpu 0.5 --cpu-time 10s --timeout 30s
 * (also --flag=value), plus --allow-degraded. Values are validated by resolveLimits, so a bad flag
 * is an InvalidOptionError naming it.
 */
import { InvalidOptionError } from '../errors';
import { resolveLimits, type LimitsOptions } from './options';

export const LIMIT_FLAGS: Record<string, keyof LimitsOptions> = {
  '--memory': 'memory', '--swap': 'swap', '--pids': 'pids', '--cpu': 'cpu', '--cpu-time': 'cpuTime', '--timeout': 'timeout',
};

export const LIMIT_FLAGS_HELP = [
  '  --memory SIZE      hard memory limit, e.g. 256M (swap off unless --swap)',
  '  --swap SIZE        swap allowed on top of --memory',
  '  --pids N           most processes/threads at once',
  '  --cpu CORES        cpu bandwidth, e.g. 0.5 (half a core)',
  '  --cpu-time DUR     cpu time budget, e.g. 10s; exhausting it kills',
  '  --timeout DUR      wall-clock limit, e.g. 30s; reaching it kills',
  '  --allow-degraded   run with rlimits when cgroups cannot enforce a limit',
].join('\n');

/**
 * Takes the limit flags out of `args` (up to a `--`, after which everything is the command).
 * Returns the limits (undefined when none was given) and the remaining arguments in order.
 */
export function takeLimitFlags(args: readonly string[]): { limits: LimitsOptions | undefined; rest: string[] } {
  const limits: LimitsOptions = {};
  const rest: string[] = [];
  let any = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') {
      rest.push(...args.slice(i));
      break;
    }
    if (a === '--allow-degraded') {
      limits.allowDegraded = true;
      any = true;
      continue;
    }
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const key = LIMIT_FLAGS[flag];
    if (key === undefined) {
      rest.push(a);
      continue;
    }
    const value = eq > 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined || value === '') throw new InvalidOptionError(flag, 'needs a value');
    (limits as Record<string, unknown>)[key] = value;
    any = true;
  }
  if (!any) return { limits: undefined, rest };
  resolveLimits(limits, 'limits'); // validate now, with the field named
  return { limits, rest };
}
