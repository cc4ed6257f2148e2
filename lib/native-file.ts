/**
 * Finds and loads the native addon. The package ships it prebuilt as
 * prebuilds/<platform>-<arch>/warden.node (the layout node-gyp-build reads; no install script ever
 * compiles anything); `npm run build:native` in a clone of the repository writes the same file for
 * the machine it runs on. Every part of warden loads the addon through here, once.
 *
 * Linux has two C libraries: the plain tag (linux-x64) is the glibc build, a musl build is tagged
 * linux-x64-musl. The C library is only looked at when a load fails (asking Node for it costs
 * milliseconds, and the plugin runner loads the addon at every start), by trying the candidates in
 * order.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** dist/lib → the package root. */
const PACKAGE_ROOT = path.join(__dirname, '..', '..');

/** The one command that builds the addon from source (README, "Install"). */
export const BUILD_COMMAND = 'npm ci && npm run build:native';

/** The directories under prebuilds/ this process can load from, in the order they are tried. */
export function addonTags(platform: string = process.platform, arch: string = process.arch): string[] {
  const tag = `${platform}-${arch}`;
  return platform === 'linux' ? [tag, `${tag}-musl`] : [tag];
}

export function addonPath(root: string, tag: string): string {
  return path.join(root, 'prebuilds', tag, 'warden.node');
}

/** The C library of this process, for the error message only (slow: a diagnostic report). */
function libcName(): string {
  if (process.platform !== 'linux') return '';
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  return header?.glibcVersionRuntime ? ` (glibc ${header.glibcVersionRuntime})` : ' (musl libc)';
}

let loaded: { exports: unknown; file: string } | undefined;

/** The addon's exports; throws an Error that names the platform looked for and how to build it. */
export function requireAddon(): unknown {
  loaded ??= loadAddon(PACKAGE_ROOT, process.platform, process.arch);
  return loaded.exports;
}

/** The path of the binary requireAddon() loads (for a child process that loads it by path). */
export function addonFile(): string {
  requireAddon();
  return loaded!.file;
}

/** Loads the first candidate for platform-arch under root/prebuilds that loads (exported for tests). */
export function loadAddon(root: string, platform: string, arch: string): { exports: unknown; file: string } {
  const failures: string[] = [];
  const tags = addonTags(platform, arch);
  for (const tag of tags) {
    const file = addonPath(root, tag);
    if (!fs.existsSync(file)) continue;
    try {
      // eslint-disable-next-line @typescript-eslint/no-var-requires
      return { exports: require(file) as unknown, file };
    } catch (err) {
      failures.push(`${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  const looked = tags.map((tag) => path.join('prebuilds', tag, 'warden.node')).join(' or ');
  const libc = platform === process.platform ? libcName() : '';
  throw new Error(
    `warden: no native addon loads on ${platform}-${arch}${libc}: looked for ${looked} in ${root}` +
      (failures.length > 0 ? ` (${failures.join('; ')})` : ' (none there)') +
      `.\nThe package ships a prebuilt binary for linux-x64 with glibc 2.28 or later (warden runs on Linux x86_64 only). ` +
      `To build one from source, in a clone of the warden repository run '${BUILD_COMMAND}' ` +
      `(needs python3, make and g++; it writes prebuilds/<platform>-<arch>/warden.node), then 'npm pack' there ` +
      `and install that package.`,
  );
}
