/** `warden install SPEC --into DIR`: a plugin's npm dependencies installed in a sandbox (lib/install). */
import { installPlugin } from '../install/npm';
import { formatReport, scanPlugin, type ScanReport } from '../scan';
import { list, parse, run, str, UsageError } from './trust-common';

const USAGE = `usage: warden install SPEC --into DIR [--registry URL] [--dns-server IP]... [--memory SIZE] [--timeout DURATION]

Copies the plugin directory SPEC (its package.json and package-lock.json required) into DIR (new or
empty) and runs the npm that ships with node there, in a sandbox: npm ci --ignore-scripts (no
package's lifecycle script runs, every tarball is checked against the lockfile's integrity), with
network only to the registry's host and port, writable only DIR and a private /tmp. Then prints
DIR's digest for 'warden trust add' on stdout, and the capability scan of DIR (as warden scan) on
stderr. A .npmrc in SPEC is refused.

  --registry URL     default: $npm_config_registry, else https://registry.npmjs.org/
  --dns-server IP    what the host asks for the registry's name (default: the system's)
  --memory SIZE      sandbox memory (default 1G)     --timeout DURATION  (default 10m)

Exit status: 0 installed; 1 the install failed (npm's output says why); 2 a bad option.
`;

export async function install(args: string[]): Promise<number> {
  return run('install', USAGE, args, async () => {
    const p = parse(args, { into: { type: 'string' }, registry: { type: 'string' }, 'dns-server': { type: 'string', multiple: true }, memory: { type: 'string' }, timeout: { type: 'string' } }, { min: 1, max: 1, names: 'SPEC' });
    const into = str(p, 'into');
    if (into === undefined) throw new UsageError('--into DIR is required: the directory the plugin is installed into');
    const dns = list(p, 'dns-server');
    const r = await installPlugin(p.positionals[0], into, {
      registry: str(p, 'registry') ?? (process.env.npm_config_registry || 'https://registry.npmjs.org/'),
      ...(dns.length > 0 ? { dnsServers: dns } : {}),
      memory: str(p, 'memory'), timeout: str(p, 'timeout'),
      onNetwork: (e) => { if (e.decision === 'refused') process.stderr.write(`warden install: refused ${e.name ?? e.address ?? ''}:${e.port ?? ''}: ${e.reason ?? ''}\n`); },
      // What the installed code reaches, for the publisher about to list it (advice; see warden scan).
      scan: (dir) => scanPlugin(dir),
    });
    process.stdout.write(`${r.digest}\n`);
    // stdout stays the digest alone, for scripts; the scan goes to stderr for the reader.
    process.stderr.write(`capability scan of ${r.dir}:\n${formatReport(r.scan as ScanReport)}`);
    process.stderr.write(`installed into ${r.dir}; list it with: warden trust add LIST ${r.dir} --publisher P\n`);
    return 0;
  });
}
