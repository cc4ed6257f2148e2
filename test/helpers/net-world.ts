/**
 * A small private internet for the network tests and benchmark, made of network namespaces this
 * process creates (and deletes again): nothing leaves this machine.
 *
 *   "inet" namespace  198.51.100.1, 198.51.100.53 (DNS), 203.0.113.10, 2001:db8::1 — runs
 *                     net-world-server (HTTP :80, bulk :9000, UDP echo :7, DNS :53)
 *        | veth
 *   "host" namespace  198.51.100.2, 2001:db8::2; default routes into "inet". Also holds the
 *                     addresses an attacker wants: 10.1.2.3, 169.254.169.254, 100.100.100.200,
 *                     fd00:ec2::254, on its loopback device.
 *
 * The warden host of a test runs inside the "host" namespace (`ip netns exec`), so even a bug that
 * let a sandbox use the host's network would only reach these namespaces.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

export const WORLD = {
  http: '198.51.100.1',
  dns: '198.51.100.53',
  other: '203.0.113.10',
  http6: '2001:db8::1',
  hostSide: '198.51.100.2',
  privateAddr: '10.1.2.3',
  metadata: '169.254.169.254',
  metadata6: 'fd00:ec2::254',
  alibaba: '100.100.100.200',
};

export interface World {
  hostNs: string;
  inetNs: string;
  server: ChildProcess;
  /** The command line that runs `argv` inside the host namespace. */
  hostExec(argv: string[]): string[];
  destroy(): void;
}

/** Why this machine cannot build the world, or null when it can. */
export function worldUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'creating network namespaces needs root';
  if (spawnSync('ip', ['-V']).status !== 0) return "'ip' (iproute2) is not installed";
  if (spawnSync('nsenter', ['--version']).status !== 0) return "'nsenter' (util-linux) is not installed";
  return null;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export async function createWorld(records: Record<string, unknown>): Promise<World> {
  const id = `${process.pid.toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`.slice(0, 8);
  const hostNs = `wdh-${id}`;
  const inetNs = `wdi-${id}`;
  const destroy = () => {
    for (const ns of [hostNs, inetNs]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  };
  try {
    ip('netns', 'add', hostNs);
    ip('netns', 'add', inetNs);
    const inNs = (ns: string, ...args: string[]) => ip('-n', ns, ...args);
    ip('link', 'add', `wdh${id}`.slice(0, 15), 'netns', hostNs, 'type', 'veth', 'peer', 'name', `wdi${id}`.slice(0, 15), 'netns', inetNs);
    const hv = `wdh${id}`.slice(0, 15), iv = `wdi${id}`.slice(0, 15);
    for (const [ns, dev] of [[hostNs, hv], [inetNs, iv]] as const) {
      inNs(ns, 'link', 'set', 'lo', 'up');
      inNs(ns, 'link', 'set', dev, 'up');
    }
    inNs(inetNs, 'addr', 'add', '198.51.100.1/24', 'dev', iv);
    inNs(inetNs, 'addr', 'add', '198.51.100.53/32', 'dev', iv);
    inNs(inetNs, 'addr', 'add', '203.0.113.10/24', 'dev', iv);
    inNs(inetNs, 'addr', 'add', '2001:db8::1/64', 'dev', iv, 'nodad');
    inNs(hostNs, 'addr', 'add', '198.51.100.2/24', 'dev', hv);
    inNs(hostNs, 'addr', 'add', '2001:db8::2/64', 'dev', hv, 'nodad');
    inNs(hostNs, 'route', 'add', 'default', 'via', '198.51.100.1');
    inNs(hostNs, '-6', 'route', 'add', 'default', 'via', '2001:db8::1');
    inNs(inetNs, 'route', 'add', 'default', 'via', '198.51.100.2');
    // On the loopback device: no dummy-interface module needed, and they are local to the host.
    for (const a of ['10.1.2.3/32', '169.254.169.254/32', '100.100.100.200/32', '100.64.0.1/32', '192.168.77.1/32']) inNs(hostNs, 'addr', 'add', a, 'dev', 'lo');
    inNs(hostNs, 'addr', 'add', 'fd00:ec2::254/128', 'dev', 'lo', 'nodad');
  } catch (err) {
    destroy();
    throw err;
  }
  const script = path.join(__dirname, 'net-world-server.js');
  const server = spawn('ip', ['netns', 'exec', inetNs, process.execPath, script, JSON.stringify(records), WORLD.dns], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    server.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) resolve();
    });
    server.on('exit', (code) => reject(new Error(`the world server exited (${code})`)));
  });
  return {
    hostNs,
    inetNs,
    server,
    // nsenter switches the network namespace only (`ip netns exec` also remounts /sys, hiding the
    // cgroup file systems the sandboxes need).
    hostExec: (argv) => ['nsenter', `--net=/run/netns/${hostNs}`, ...argv],
    destroy: () => {
      server.stdin!.end();
      server.kill('SIGKILL');
      destroy();
    },
  };
}
