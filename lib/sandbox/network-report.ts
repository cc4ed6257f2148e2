/**
 * `warden doctor`: can this host enforce network policies? Found by doing it once: a sandbox under a
 * policy connects to its own loopback, which goes through the whole path (the seccomp listener,
 * pidfd_getfd, the DNS stub in the sandbox's namespace), and the kernel's version says whether
 * SECCOMP_IOCTL_NOTIF_ADDFD (5.9), used for every allowed connection, is there.
 */
import * as os from 'node:os';
import { Sandbox } from './sandbox';

export interface NetworkReport {
  /** 'seccomp-addfd': connect intercepted, host-connected sockets handed in. 'none': policies fail. */
  mechanism: 'seccomp-addfd' | 'none';
  reason: string;
}

function kernelAtLeast(major: number, minor: number): boolean {
  const m = /^(\d+)\.(\d+)/.exec(os.release());
  return m !== null && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

export async function networkReport(): Promise<NetworkReport> {
  if (!kernelAtLeast(5, 9)) return { mechanism: 'none', reason: `kernel ${os.release()} has no SECCOMP_IOCTL_NOTIF_ADDFD (5.9)` };
  const probe = "require('net').connect(1, '127.0.0.1').on('error', (e) => { process.stdout.write(e.code); })";
  try {
    const sb = Sandbox.spawn({ command: [process.execPath, '-e', probe], network: { allow: [] }, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    sb.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const [r] = await Promise.all([sb.exited, new Promise((resolve) => sb.stdout!.on('end', resolve))]);
    if (out === 'ECONNREFUSED' && r.code === 0) return { mechanism: 'seccomp-addfd', reason: 'connect is intercepted through the seccomp listener; allowed connections are made by the host and handed in' };
    return { mechanism: 'none', reason: `the probe sandbox's connect gave '${out}' (exit ${r.code ?? r.signal})` };
  } catch (e) {
    return { mechanism: 'none', reason: (e as Error).message };
  }
}
