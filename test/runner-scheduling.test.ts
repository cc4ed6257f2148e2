// A runner's event-loop thread runs in SCHED_BATCH (native/runner_scheduling.cc): its wake-ups do
// not preempt the host's thread. Read from the kernel (/proc/<pid>/stat, field 41: the policy).
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { spawnNode } from '../lib/process/spawn-node';

const SCHED_BATCH = 3;

function policyOf(pid: number): number {
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[38]);
}

t.test('a sandboxed runner runs in SCHED_BATCH; the host does not', async (t) => {
  const p = await spawnNode(path.join(__dirname, '..', '..', 'test', 'helpers', 'channel-plugin.js'), { timeout: 5000 });
  t.teardown(() => p.close(500));
  t.equal(p.callSync('add', 1, 2), 3, 'the runner answers');
  t.equal(policyOf(p.pid), SCHED_BATCH, `runner ${p.pid}: policy SCHED_BATCH`);
  t.equal(policyOf(process.pid), 0, 'the host keeps the normal class (SCHED_OTHER)');
});
