/**
 * Whether another host process, started by a test beside it, can give its sandboxes cgroups. On
 * cgroup v2 it cannot when the cgroup both share holds other processes (the test's own): v2 enables
 * no controllers for the children of a cgroup with processes. The test runner's process in the root
 * cgroup can; in a delegated cgroup such as system.slice/NAME it cannot. Tests of crashed or
 * concurrent hosts skip there, with this reason.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const LIB = path.join(__dirname, '..', '..', 'lib', 'index.js');
let answer: string | null | undefined;

/** undefined when a second host can spawn with limits here; else why not. */
export function secondHostCgroupProblem(): string | undefined {
  if (answer === undefined) {
    const script = `const { Sandbox } = require(${JSON.stringify(LIB)});
      const sb = Sandbox.spawn({ command: ['/bin/true'], limits: { memory: '64M', pids: 16 }, stdio: ['ignore', 'ignore', 'ignore'] });
      sb.exited.then((r) => process.exit(r.code ?? 99));`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 30_000 });
    const why = /LimitError: ([^\n]*)/.exec(r.stderr)?.[1];
    answer = r.status === 0 ? null : `a second host process cannot give its sandboxes cgroups beside this test (${why ?? `exit ${r.status}`}); run as root in a cgroup of its own (the VM's root phase covers it)`;
  }
  return answer ?? undefined;
}
