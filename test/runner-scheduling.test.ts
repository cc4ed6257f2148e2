// A runner's event-loop thread runs in SCHED_BATCH (native/runner_scheduling.cc): its wake-ups do
// not preempt the host's thread. Read from the kernel (/proc/<pid>/stat, field 41: the policy).
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { spawnNode } from '../lib/process/spawn-node';

const SCHED_BATCH = 3;

function policyOf(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[38]);
}

t.test('a sandboxed runner runs in SCHED_BATCH; the host does not', async (t) => {
  // The plugin sits in its own 0755 directory: the sandbox's host uid must reach it, and the checkout
  // may live where only root can enter.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-sched-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const entry = path.join(dir, 'index.js');
  fs.writeFileSync(entry, 'exports.add = (a, b) => a + b;\n', { mode: 0o644 });
  const p = await spawnNode(entry, { timeout: 5000 });
  t.teardown(() => p.close(500));
  t.equal(p.callSync('add', 1, 2), 3, 'the runner answers');
  t.equal(policyOf(p.pid), SCHED_BATCH, `runner ${p.pid}: policy SCHED_BATCH`);
  t.equal(policyOf(process.pid), 0, 'the host keeps the normal class (SCHED_OTHER)');
});
