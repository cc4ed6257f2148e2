/** `warden scan DIR`: what a plugin's code reaches, against the permissions its manifest requests. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readManifest } from '../plugins/manifest';
import { permissionToString } from '../plugins/permissions';
import { formatReport, scanPlugin, type ScanReport } from '../scan';
import { flag, parse, run, UsageError } from './trust-common';

const USAGE = `usage: warden scan DIR [--json]

Reads the JavaScript of plugin directory DIR and of its bundled dependencies (node_modules inside
DIR) and lists what it reaches: built-in modules (fs, net, http, child_process, vm, ...), globals
(fetch, WebSocket, eval, Function, process.binding), require()/import() of computed names, native
addons, binding.gyp and install scripts; each with the permission it implies. Then what the code
uses that the manifest does not request, and what the manifest requests that the code never uses.
Advice, not a boundary: the sandbox is what holds a plugin to its permissions.

  --json   the report as JSON: { findings, implied, diff, stats, requested }

exit 0: nothing used beyond the manifest's request, and every file read through
     3: something used that is not requested, or code the scan could not see through
        (a file that does not parse, a computed require, a native addon, eval of a computed
        string, a limit reached): read the findings
     4: only requests the code never uses (grants to drop)
     1: DIR cannot be read or its manifest is invalid; 2: usage
`;

/** The manifest's permissions, or none when DIR has no manifest. */
function requestedOf(dir: string): { requested: string[]; entries: string[]; manifest: boolean } {
  if (!fs.existsSync(path.join(dir, 'warden.json')) && !fs.existsSync(path.join(dir, 'package.json'))) return { requested: [], entries: [], manifest: false };
  try {
    const m = readManifest(dir);
    return { requested: m.permissions.map(permissionToString), entries: [path.relative(m.dir, m.entry)], manifest: true };
  } catch (e) {
    if ((e as { field?: string }).field === '$' && /not a warden plugin/.test((e as Error).message)) return { requested: [], entries: [], manifest: false };
    throw new UsageError(`DIR's manifest is not valid: ${(e as Error).message}`);
  }
}

/** The exit code a report is worth (see USAGE). */
export function scanExitCode(report: ScanReport): number {
  if (report.diff.usedNotRequested.length > 0) return 3;
  if (report.diff.requestedUnused.length > 0) return 4;
  return 0;
}

export async function scanCommand(args: string[]): Promise<number> {
  return run('scan', USAGE, args, async () => {
    const p = parse(args, { json: { type: 'boolean' } }, { min: 1, max: 1, names: 'DIR' });
    const dir = p.positionals[0];
    const { requested, entries, manifest } = requestedOf(dir);
    const report = await scanPlugin(dir, { requested, entries });
    if (flag(p, 'json')) {
      process.stdout.write(JSON.stringify({ ...report, requested }, null, 2) + '\n');
    } else {
      if (!manifest) process.stdout.write('(no warden manifest in DIR: compared with no requested permissions)\n');
      else process.stdout.write(`requested: ${requested.length === 0 ? '-' : requested.join(', ')}\n`);
      process.stdout.write(formatReport(report));
    }
    return scanExitCode(report);
  });
}
