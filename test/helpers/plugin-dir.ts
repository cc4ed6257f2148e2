// Plugin directories for the runner and pool tests, removed when the test ends.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** A directory with `files` (relative path → text), readable by the sandbox's unprivileged uid. */
export function pluginDir(t: { teardown(fn: () => void): void }, files: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-plugin-'));
  fs.chmodSync(dir, 0o755);
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(dir, name), text, { mode: 0o644 });
  }
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A plugin that reports on its sandbox and tries to run a program. */
export const PROBE_PLUGIN = {
  'index.js': `
    exports.ping = () => 'pong';
    exports.where = () => __filename;
    exports.pid = () => process.pid;
    exports.env = (k) => process.env[k];
    exports.exec = () => require('child_process').execFileSync('/bin/true').length;
    exports.worker = () => new Promise((resolve, reject) => {
      const { Worker } = require('worker_threads');
      const w = new Worker('require("worker_threads").parentPort.postMessage(6 * 7)', { eval: true });
      w.once('message', resolve);
      w.once('error', reject);
    });
    exports.read = (p) => require('fs').readFileSync(p, 'utf8');
  `,
};
