/**
 * `warden run [options] -- CMD [ARGS...]`: one command in a sandbox, flags in the spirit of
 * bubblewrap and nsjail.
 *
 * Exit status: the command's own; 128+N when killed by signal N; EXIT_SETUP (125) when the sandbox
 * could not be set up or an option is bad (the command never ran); EXIT_VIOLATION (159, as for a
 * death by SIGSYS) when the command was killed for a seccomp violation; EXIT_LIMIT (158) when it was
 * killed for breaking a memory, cpu-time or timeout limit. The reason is one line on stderr.
 */
import * as os from 'node:os';
import { InvalidOptionError, WardenError } from '../errors';
import { Sandbox } from '../sandbox/sandbox';
import { checkRange, DEFAULT_HOST_ID_RANGE, formatRange } from '../sandbox/ids';
import { LIMIT_FLAGS, LIMIT_FLAGS_HELP, takeLimitFlags } from '../limits/cli';
import { NAMESPACES, type NamespaceName, type RlimitName, type SpawnOptions } from '../sandbox/types';

export const EXIT_SETUP = 125;
export const EXIT_VIOLATION = 159;
/** Killed for breaking a limit (memory, cpu-time, timeout). */
export const EXIT_LIMIT = 158;

const HELP = `usage: warden run [options] -- CMD [ARGS...]

Runs CMD in a new sandbox: every namespace, a tmpfs root with read-only system directories, a private
/tmp, /proc and a minimal /dev, no capabilities, no_new_privs, the 'default' seccomp profile.

  --ro-bind SRC [DEST]     bind SRC read-only at DEST (default: the same path)
  --bind SRC [DEST]        bind SRC read-write
  --tmpfs DEST[:SIZE]      a tmpfs at DEST (SIZE like 64M)
  --tmp-size SIZE          size of the private /tmp (default 64M)
  --no-default-binds       do not bind /usr, /bin, /lib... (bind what the command needs yourself)
  --share-net              keep the host network (no network namespace; inet sockets allowed)
  --allow-net HOST[:PORT]  network by policy: connections to HOST (name, *.domain, IP, CIDR; IPv6 in
                           brackets) on PORT (number, LOW-HIGH, or any), made by the host (repeatable)
  --net-outbound           network by policy: any public destination (private, loopback, link-local and
                           metadata addresses stay closed)
  --dns-server IP          with a network policy: the DNS server the host asks (repeatable; default:
                           the host's resolver)
  --no-NS                  switch off a namespace: --no-user --no-pid --no-mount --no-net --no-ipc --no-uts --no-cgroup
  --uid N, --gid N         ids inside the sandbox
  --host-uid N, --host-gid N   as root: the unprivileged host ids to map to (default: an id of the
                           sandbox's own, drawn from the host id range)
  --host-ids FIRST-LAST    as root: the range host ids are drawn from (default \$WARDEN_HOST_IDS,
                           else ${formatRange(DEFAULT_HOST_ID_RANGE)})
  --hostname NAME          hostname inside (default warden)
  --chdir DIR              working directory inside (default /)
  --env NAME=VALUE         set a variable (repeatable); nothing is inherited but what --env-pass names
  --env-pass NAME          pass one variable of warden's own environment (repeatable)
  --profile NAME           seccomp profile: default, strict or none
  --rlimit NAME=N[:HARD]   e.g. --rlimit nofile=256 (repeatable; 'inf' for unlimited)
  --json-status            print a JSON line on stderr when the command starts and when it ends
${LIMIT_FLAGS_HELP}

exit status: the command's; 128+N for signal N; ${EXIT_SETUP} setup error or bad option; ${EXIT_VIOLATION} seccomp
violation (or hammering refused network destinations); ${EXIT_LIMIT} killed for a memory, cpu-time or timeout violation
`;

class UsageError extends Error {}

function parseRlimit(spec: string): [RlimitName, { soft: number; hard: number }] {
  const m = /^([a-z]+)=([^:]+)(?::(.+))?$/.exec(spec);
  if (m === null) throw new UsageError(`--rlimit '${spec}': expected NAME=SOFT[:HARD], e.g. nofile=256`);
  const num = (s: string) => {
    if (s === 'inf' || s === 'infinity' || s === 'unlimited') return Infinity;
    if (!/^\d+$/.test(s)) throw new UsageError(`--rlimit '${spec}': '${s}' is not a whole number or 'inf'`);
    return Number(s);
  };
  const soft = num(m[2]);
  return [m[1] as RlimitName, { soft, hard: m[3] === undefined ? soft : num(m[3]) }];
}

function parseId(flag: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new UsageError(`${flag} '${v}': expected a numeric id`);
  return Number(v);
}

/** Parses argv into spawn options; exported for tests. */
export function parseRunArgs(args: string[]): { options: SpawnOptions; jsonStatus: boolean } {
  const binds: NonNullable<SpawnOptions['binds']>[number][] = [];
  const tmpfs: NonNullable<SpawnOptions['tmpfs']>[number][] = [];
  const env: Record<string, string> = {};
  let envGiven = false;
  const namespaces: Partial<Record<NamespaceName, boolean>> = {};
  const rlimits: Partial<Record<RlimitName, { soft: number; hard: number }>> = {};
  const o: Partial<SpawnOptions> = {};
  let jsonStatus = false;
  const limitArgs: string[] = []; // validated by the limits module, which owns their meaning
  const allowNet: string[] = [];
  const dnsServers: string[] = [];
  let netOutbound = false;
  let i = 0;
  const value = (flag: string): string => {
    const v = args[++i];
    if (v === undefined) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  // An optional DEST follows SRC unless the next word is a flag or the command separator.
  const optionalDest = (): string | undefined => {
    const next = args[i + 1];
    if (next === undefined || next.startsWith('-')) return undefined;
    i++;
    return next;
  };
  for (; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break; // the command starts here
    const noNs = /^--no-([a-z]+)$/.exec(a);
    if (noNs !== null && (NAMESPACES as readonly string[]).includes(noNs[1])) {
      namespaces[noNs[1] as NamespaceName] = false;
      continue;
    }
    switch (a) {
      case '--ro-bind':
      case '--bind': {
        const source = value(a);
        binds.push({ source, target: optionalDest() ?? source, writable: a === '--bind' });
        break;
      }
      case '--tmpfs': {
        const [target, size] = value(a).split(':');
        tmpfs.push(size === undefined ? { target } : { target, size });
        break;
      }
      case '--tmp-size': o.tmpSize = value(a); break;
      case '--no-default-binds': o.defaultBinds = false; break;
      case '--share-net': o.shareNet = true; break;
      case '--allow-net': allowNet.push(value(a)); break;
      case '--net-outbound': netOutbound = true; break;
      case '--dns-server': dnsServers.push(value(a)); break;
      case '--uid': o.uid = parseId(a, value(a)); break;
      case '--gid': o.gid = parseId(a, value(a)); break;
      case '--host-uid': o.hostUid = parseId(a, value(a)); break;
      case '--host-gid': o.hostGid = parseId(a, value(a)); break;
      case '--host-ids': o.hostIds = checkRange('--host-ids', value(a)); break;
      case '--hostname': o.hostname = value(a); break;
      case '--chdir': o.cwd = value(a); break;
      case '--env': {
        const kv = value(a);
        const eq = kv.indexOf('=');
        if (eq <= 0) throw new UsageError(`--env '${kv}': expected NAME=VALUE`);
        env[kv.slice(0, eq)] = kv.slice(eq + 1);
        envGiven = true;
        break;
      }
      case '--env-pass': {
        const name = value(a);
        const v = process.env[name];
        if (v === undefined) throw new UsageError(`--env-pass ${name}: warden's environment has no ${name}`);
        env[name] = v;
        envGiven = true;
        break;
      }
      case '--profile': o.seccomp = value(a); break;
      case '--rlimit': {
        const [name, lim] = parseRlimit(value(a));
        rlimits[name] = lim;
        break;
      }
      case '--json-status': jsonStatus = true; break;
      case '--allow-degraded': limitArgs.push(a); break;
      default:
        if (LIMIT_FLAGS[a.split('=')[0]] !== undefined) {
          limitArgs.push(a.includes('=') ? a : `${a}=${value(a)}`);
          break;
        }
        throw new UsageError(`unknown option '${a}' (warden run --help lists them)`);
    }
  }
  if (o.hostIds === undefined && process.env.WARDEN_HOST_IDS !== undefined) o.hostIds = checkRange('WARDEN_HOST_IDS', process.env.WARDEN_HOST_IDS);
  const command = args.slice(i);
  if (command.length === 0) throw new UsageError('missing command: warden run [options] -- CMD [ARGS...]');
  if (envGiven && env.PATH === undefined) env.PATH = '/usr/local/bin:/usr/bin:/bin';
  const { limits } = takeLimitFlags(limitArgs);
  if (dnsServers.length > 0 && allowNet.length === 0 && !netOutbound) throw new UsageError('--dns-server needs a network policy (--allow-net or --net-outbound)');
  const network = allowNet.length > 0 || netOutbound
    ? { allow: allowNet, ...(netOutbound ? { outbound: true } : {}), ...(dnsServers.length > 0 ? { dnsServers } : {}) }
    : undefined;
  const options: SpawnOptions = {
    ...o,
    ...(network !== undefined ? { network } : {}),
    ...(limits !== undefined ? { limits } : {}),
    command,
    stdio: ['inherit', 'inherit', 'inherit'],
    ...(binds.length ? { binds } : {}),
    ...(tmpfs.length ? { tmpfs } : {}),
    ...(envGiven ? { env } : {}),
    ...(Object.keys(namespaces).length ? { namespaces } : {}),
    ...(Object.keys(rlimits).length ? { rlimits } : {}),
  };
  return { options, jsonStatus };
}

export async function runCommand(args: string[]): Promise<number> {
  if (args[0] === '--help' || args[0] === '-h') {
    process.stdout.write(HELP);
    return 0;
  }
  const status = (o: object) => process.stderr.write(`${JSON.stringify(o)}\n`);
  let parsed: ReturnType<typeof parseRunArgs>;
  try {
    parsed = parseRunArgs(args);
  } catch (err) {
    if (err instanceof UsageError || err instanceof InvalidOptionError) {
      process.stderr.write(`warden run: ${err.message}\n`);
      return EXIT_SETUP;
    }
    throw err;
  }
  let sb: Sandbox;
  try {
    sb = Sandbox.spawn(parsed.options);
  } catch (err) {
    if (err instanceof WardenError) {
      process.stderr.write(`warden run: ${err.message}\n`);
      if (parsed.jsonStatus) {
        const e = err as WardenError & { stage?: string; errnoName?: string; field?: string };
        status({ status: 'setup-error', code: e.code, stage: e.stage, errno: e.errnoName, field: err instanceof InvalidOptionError ? err.field : undefined, message: err.message });
      }
      return EXIT_SETUP;
    }
    throw err;
  }
  if (parsed.jsonStatus) status({ status: 'running', pid: sb.pid });
  // Refusals are one line each on stderr: the command's own error ("Permission denied") says less.
  sb.on('network', (e) => {
    if (e.decision === 'refused') process.stderr.write(`warden run: network: refused ${e.type} ${e.name ?? `${e.address ?? ''}${e.port ? `:${e.port}` : ''}`}: ${e.reason ?? ''}\n`);
  });
  // Signals to warden go on to the sandbox (pid 1 there ignores those it has no handler for).
  const forward = (sig: NodeJS.Signals) => sb.kill(sig);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, forward);
  const r = await sb.exited;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, forward);
  const code = r.violation?.kind === 'seccomp' || r.violation?.kind === 'network' ? EXIT_VIOLATION
    : r.violation !== null && r.violation.kind !== 'pids' ? EXIT_LIMIT
    : r.code ?? 128 + (os.constants.signals[r.signal!] ?? 0);
  if (r.violation !== null) {
    const v = r.violation;
    const what = v.syscall ? `: syscall ${v.syscall}` : v.limit !== undefined ? `: limit ${v.limit}${v.observed !== undefined ? `, observed ${v.observed}` : ''}` : '';
    process.stderr.write(`warden run: ${v.kind} violation${what}${code === EXIT_VIOLATION || code === EXIT_LIMIT ? '; the sandbox was killed' : ''}\n`);
  }
  if (parsed.jsonStatus) status({ status: 'exited', code: r.code, signal: r.signal, violation: r.violation, exitStatus: code });
  return code;
}

