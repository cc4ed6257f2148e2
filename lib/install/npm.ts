/**
 * A plugin's npm dependencies installed inside a warden sandbox: `npm ci` of the npm that ships
 * with node, run with
 *   - lifecycle scripts off (`--ignore-scripts`: no preinstall/install/postinstall of any package,
 *     no implicit `node-gyp rebuild`),
 *   - the network limited by the egress policy to the registry's host and port (every other
 *     destination, a lockfile's `resolved` URL on another host included, is refused),
 *   - writable only DIR (bound at /pkg; as root a staging directory renamed into DIR after) and the
 *     sandbox's private /tmp (npm's cache and HOME),
 *   - the lockfile as the only source of versions: `npm ci` refuses a tree that differs from it and
 *     checks every tarball against the lockfile's `integrity`.
 * The plugin's files are copied into DIR first; DIR must be new or empty, not a symlink, not inside
 * the plugin. A `.npmrc` in the plugin
 * is refused: its settings (scoped registries, script shells) would apply to the install.
 * Then DIR's digest (the trust list's) is computed; `scan`, when given, runs last on DIR: that is
 * the one place the capability scan of the install plugs in.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { InvalidOptionError, WardenError } from '../errors';
import { Sandbox } from '../sandbox/sandbox';
import { digestDirectory } from '../trust/digest';
import type { NetworkEvent } from '../net/policy';

/** Where the npm that ships with node lives, from the node binary running this. */
export function bundledNpm(nodePath = process.execPath): string {
  const candidates = [
    path.join(path.dirname(path.dirname(fs.realpathSync(nodePath))), 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js'),
    '/usr/lib/node_modules/npm/bin/npm-cli.js',
    '/usr/share/nodejs/npm/bin/npm-cli.js',
  ];
  const found = candidates.find((c) => fs.existsSync(c));
  if (found === undefined) throw new InvalidOptionError('npm', `no npm found beside node (looked at ${candidates.join(', ')}); install the npm that ships with node`);
  return found;
}

export interface InstallOptions {
  /** The registry, e.g. "https://registry.npmjs.org/". Its host and port are the only destination allowed. */
  registry: string;
  /** DNS servers the host asks for the registry's name (default Node's). */
  dnsServers?: string[];
  /** Limits of the sandbox (defaults: memory 1G, pids 256, timeout 10 min). */
  memory?: string | number;
  timeout?: string | number;
  /** npm's output (default: this process's stderr). */
  output?: number;
  /** Each network decision (allowed, refused). */
  onNetwork?: (e: NetworkEvent) => void;
  /** The capability scan, if one is wired in: runs on DIR after the install, its result returned. */
  scan?: (dir: string) => Promise<unknown>;
}

export interface InstallResult {
  dir: string;
  digest: string;
  /** What `scan` returned; undefined when no scanner was given. */
  scan: unknown;
}

/** npm ci failed or was stopped in its sandbox. */
export class InstallError extends WardenError {
  constructor(message: string) {
    super('ERR_INSTALL', message);
  }
}

/** The egress grant for a registry URL: its host and port. */
export function registryGrant(registry: string): string {
  let u: URL;
  try {
    u = new URL(registry);
  } catch {
    throw new InvalidOptionError('registry', `'${registry}' is not a URL (like https://registry.npmjs.org/)`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidOptionError('registry', 'must be an http: or https: URL');
  if (u.username !== '' || u.password !== '') throw new InvalidOptionError('registry', 'must not carry credentials');
  const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
  return `${u.hostname}:${port}`;
}

function copyTree(from: string, to: string): void {
  for (const e of fs.readdirSync(from, { withFileTypes: true })) {
    if (e.name === 'node_modules') continue; // installed fresh from the lockfile
    const src = path.join(from, e.name);
    const dst = path.join(to, e.name);
    if (e.isDirectory()) {
      fs.mkdirSync(dst, { mode: 0o755 });
      copyTree(src, dst);
    } else if (e.isFile()) {
      fs.copyFileSync(src, dst);
      fs.chmodSync(dst, 0o644);
    } else {
      throw new InvalidOptionError('SPEC', `${src} is not a regular file or directory; a plugin to install holds only those`);
    }
  }
}

function chownTree(dir: string, uid: number, gid: number): void {
  fs.lchownSync(dir, uid, gid);
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) chownTree(p, uid, gid);
    else fs.lchownSync(p, uid, gid);
  }
}

/** `path` with its longest existing start resolved (symlinks followed): where it is, or would be. */
function realPlace(p: string): string {
  let head = p;
  const tail: string[] = [];
  while (!fs.existsSync(head) && path.dirname(head) !== head) {
    tail.unshift(path.basename(head));
    head = path.dirname(head);
  }
  return path.join(fs.realpathSync(head), ...tail);
}

/**
 * DIR must be a new or empty directory, named as itself (not through a symlink: as root it is
 * replaced by rename, and npm would write wherever the link points), and not inside SPEC, whose copy
 * would then copy itself until the path is too long.
 */
function checkInto(into: string, dir: string, realSrc: string): void {
  const st = fs.lstatSync(dir, { throwIfNoEntry: false });
  if (st?.isSymbolicLink()) throw new InvalidOptionError('--into', `${into} is a symlink; name the directory itself`);
  if (st !== undefined && !st.isDirectory()) throw new InvalidOptionError('--into', `${into} is not a directory; name a new or empty directory`);
  if (st !== undefined && fs.readdirSync(dir).length > 0) throw new InvalidOptionError('--into', `${into} is not empty; install into a new directory`);
  const real = realPlace(dir);
  if (real === realSrc || real.startsWith(`${realSrc}/`)) throw new InvalidOptionError('--into', `${into} is inside the plugin directory ${realSrc}; install outside it`);
}

/** Copies the plugin at `spec` into `into`, installs its dependencies there in a sandbox, digests it. */
export async function installPlugin(spec: string, into: string, o: InstallOptions): Promise<InstallResult> {
  const grant = registryGrant(o.registry);
  const src = path.resolve(spec);
  const dir = path.resolve(into);
  if (!fs.statSync(src).isDirectory()) throw new InvalidOptionError('SPEC', `${spec} is not a plugin directory`);
  for (const f of ['package.json', 'package-lock.json']) {
    if (!fs.existsSync(path.join(src, f))) throw new InvalidOptionError('SPEC', `${spec} has no ${f}: npm ci installs exactly what a lockfile says (make one with npm install --package-lock-only)`);
  }
  if (fs.existsSync(path.join(src, '.npmrc'))) throw new InvalidOptionError('SPEC', `${spec}/.npmrc would configure the install (registries, scripts); remove it`);
  checkInto(into, dir, fs.realpathSync(src));
  fs.mkdirSync(dir, { recursive: true });
  const root = process.getuid?.() === 0;
  // As root the sandbox writes as a host id of its own, unknown before the spawn, so the directory
  // it writes must be open to all (0777). That directory is a staging one inside a 0700 directory of
  // root's (bound with the host's rights), so no other local user can add files before the digest;
  // once npm is done it is handed back to this user and renamed into DIR.
  const stage = root ? fs.mkdtempSync(path.join(path.dirname(dir), '.warden-install-')) : undefined;
  const work = stage === undefined ? dir : path.join(stage, 'pkg');
  try {
    if (stage !== undefined) {
      fs.mkdirSync(work);
      fs.chmodSync(work, 0o777);
    }
    copyTree(src, work);
    await runNpm(work, stage !== undefined, grant, o);
    if (stage !== undefined) {
      chownTree(work, process.getuid!(), process.getgid!());
      fs.chmodSync(work, 0o755);
      fs.rmdirSync(dir);
      fs.renameSync(work, dir);
    }
  } finally {
    if (stage !== undefined) fs.rmSync(stage, { recursive: true, force: true });
  }
  const digest = await digestDirectory(dir);
  // The capability scan of what was installed, when a scanner is wired in.
  const scan = o.scan === undefined ? undefined : await o.scan(dir);
  return { dir, digest, scan };
}

/** npm ci in `work`, in a sandbox; throws InstallError when it fails or is stopped. */
async function runNpm(work: string, hostAccess: boolean, grant: string, o: InstallOptions): Promise<void> {
  const npm = bundledNpm();
  const sb = Sandbox.spawn({
    command: [process.execPath, npm, 'ci', '--ignore-scripts', '--no-audit', '--no-fund', '--no-update-notifier',
      // Few retries: a refused destination or a bad tarball does not get better by waiting.
      `--registry=${o.registry}`, '--fetch-retries=1', '--fetch-retry-mintimeout=1000', '--fetch-retry-maxtimeout=2000', '--cache=/tmp/npm-cache', '--userconfig=/tmp/no-user-npmrc', '--globalconfig=/tmp/no-global-npmrc', '--loglevel=warn'],
    env: { PATH: '/usr/bin:/bin', HOME: '/tmp', npm_config_ignore_scripts: 'true' },
    binds: [
      { source: work, target: '/pkg', writable: true, hostAccess },
      // npm and node, where they are not under the system directories every sandbox sees.
      ...[path.dirname(path.dirname(npm)), fs.realpathSync(process.execPath)]
        .filter((p) => !/^\/(usr|bin|lib|lib64|sbin)\//.test(p)).map((source) => ({ source, hostAccess: true })),
    ],
    cwd: '/pkg',
    tmpSize: '512M',
    network: { allow: [grant], ...(o.dnsServers !== undefined ? { dnsServers: o.dnsServers } : {}), connectionsPerMinute: 600 },
    limits: { memory: o.memory ?? '1G', pids: 256, timeout: o.timeout ?? '10m' },
    stdio: ['ignore', o.output ?? 2, o.output ?? 2],
  });
  if (o.onNetwork !== undefined) sb.on('network', o.onNetwork);
  const { code, signal, violation } = await sb.exited;
  if (violation !== null) throw new InstallError(`npm ci was stopped: ${violation.kind} violation${violation.syscall !== undefined ? ` (${violation.syscall})` : ''}`);
  if (code !== 0) throw new InstallError(`npm ci failed (${signal ?? `exit ${code}`}); see npm's output above. Nothing was run from the packages (scripts are off)`);
}
