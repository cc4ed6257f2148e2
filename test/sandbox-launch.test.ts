/**
 * Sandbox.launch: the asynchronous spawn. The clone and the child's setup run on the addon's launch
 * thread, so the host's event loop runs on meanwhile; what it starts, the errors it gives and what it
 * leaves behind must be those of Sandbox.spawn.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Sandbox } from '../lib/sandbox/sandbox';
import { SandboxSetupError } from '../lib/sandbox/errors';
import { InvalidOptionError } from '../lib/errors';
import { isRoot, waitUntil, withMarker, within } from './helpers/sandbox';
import { cgroupCount } from './helpers/scale';

function output(sb: Sandbox): Promise<string> {
  return new Promise((resolve) => {
    let out = '';
    sb.stdout!.setEncoding('utf8');
    sb.stdout!.on('data', (d: string) => (out += d));
    sb.stdout!.on('end', () => resolve(out));
  });
}

const fdCount = () => fs.readdirSync('/proc/self/fd').length;


t.test('launch runs the command in the sandbox, and the event loop turns while it is set up', async (t) => {
  // Sandbox.spawn holds the thread until the child has exec'd, so nothing queued runs before it
  // returns; launch() hands the setup to the launch thread. Five tries: the loop has to reach its
  // check phase before the launch thread and the child finish a whole setup, which a host thread
  // preempted for milliseconds could miss once.
  let turnedFirst = 0;
  for (let i = 0; i < 5; i++) {
    let turned = false;
    setImmediate(() => (turned = true));
    const sb = await Sandbox.launch({ command: ['/bin/sh', '-c', 'echo $$; exit 3'] });
    if (turned) turnedFirst++;
    const [out, result] = await Promise.all([output(sb), sb.exited]);
    t.equal(out.trim(), '1', 'the command is pid 1 of its own PID namespace');
    t.equal(result.code, 3, 'its exit code arrives');
    t.ok(sb.pid > 1, 'the host pid is known once launched');
  }
  t.ok(turnedFirst >= 1, `the event loop ran before the launch resolved in ${turnedFirst} of 5`);

  // Control: the synchronous spawn never lets it.
  let turned = false;
  setImmediate(() => (turned = true));
  const sb = Sandbox.spawn({ command: ['/bin/true'] });
  t.notOk(turned, 'control: Sandbox.spawn returns before the loop turns');
  await sb.exited;
});

t.test('a setup failure rejects with the stage and the entry, and leaves no fd or cgroup', async (t) => {
  const failing = () =>
    Sandbox.launch({
      command: ['/no/such/command'],
      stdio: ['pipe', 'pipe', 'pipe'],
      limits: isRoot ? { memory: '64M', pids: 16 } : undefined,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
  await failing(); // what the first use opens once for the process (host id lock, mount namespace)
  const cgroupsBefore = cgroupCount();
  await waitUntil(() => cgroupCount() === cgroupsBefore, 5000, 'the first sandbox\'s cgroup to be removed');
  const fdsBefore = fdCount();
  for (let i = 0; i < 10; i++) {
    const err = await failing();
    t.ok(err instanceof SandboxSetupError, 'a SandboxSetupError');
    const e = err as SandboxSetupError;
    t.equal(e.stage, 'exec');
    t.equal(e.entry, 'command[0]');
    t.match(e.message, /\/no\/such\/command/);
  }
  // A cgroup's own fds (its OOM eventfd on v1) go when its removal, which is asynchronous, ends.
  await waitUntil(() => cgroupCount() === cgroupsBefore && fdCount() <= fdsBefore, 5000,
    () => `the failed sandboxes' cgroups and fds to go (fds ${fdCount()}, before ${fdsBefore})`);
  t.pass('no fd (pipes, pidfds, status sockets) and no cgroup left');
});

t.test('bad options reject (they are not thrown) and name the field', async (t) => {
  let p: Promise<Sandbox> | undefined;
  t.doesNotThrow(() => {
    p = Sandbox.launch({ command: [] });
  });
  await t.rejects(p!, InvalidOptionError);
  await t.rejects(Sandbox.launch({ command: ['/bin/true'], fds: [{ fd: 999_999, target: 5 }] }), /fds\[0\]\.fd/);
});

t.test('launches at once, and a synchronous spawn among them, each start their own sandbox', async (t) => {
  const launches = Array.from({ length: 8 }, (_, i) => Sandbox.launch({ command: ['/bin/sh', '-c', `exit ${i}`] }));
  const sync = Sandbox.spawn({ command: ['/bin/sh', '-c', 'exit 42'] });
  const sandboxes = await Promise.all(launches);
  t.equal(new Set([...sandboxes, sync].map((s) => s.pid)).size, 9, 'nine distinct processes');
  const codes = await Promise.all(sandboxes.map((s) => s.exited.then((r) => r.code)));
  t.same(codes, [0, 1, 2, 3, 4, 5, 6, 7], 'each ran its own command');
  t.equal((await sync.exited).code, 42);
});

t.test('a worker thread\'s sandboxes end with it, launched or still launching', async (t) => {
  // Their parent-death signal belongs to the launch thread, which outlives a worker: the worker's
  // end must kill them itself. Two markers: one sandbox already running when the worker ends, one
  // whose launch the worker does not wait for.
  const running = `warden-launch-running-${process.pid}`;
  const pending = `warden-launch-pending-${process.pid}`;
  const index = path.join(__dirname, '..', 'lib', 'sandbox', 'sandbox.js');
  const worker = new Worker(
    `const { Sandbox } = require(${JSON.stringify(index)});
     const { parentPort } = require('node:worker_threads');
     Sandbox.launch({ command: ['/bin/sh', '-c', 'sleep 1000; echo ${running}'] }).then((sb) => {
       parentPort.postMessage(sb.pid);
       // Ends once the test has seen the sandbox run (a worker's end now reaps it at once).
       parentPort.once('message', () => {
         void Sandbox.launch({ command: ['/bin/sh', '-c', 'sleep 1000; echo ${pending}'] });
         setImmediate(() => process.exit(0));
       });
     });`,
    { eval: true },
  );
  const pid = await within(new Promise<number>((resolve) => worker.once('message', resolve)), 30_000, 'the worker\'s sandbox');
  t.ok(fs.existsSync(`/proc/${pid}`), 'the worker\'s sandbox ran');
  worker.postMessage('end');
  await within(new Promise((resolve) => worker.once('exit', resolve)), 30_000, 'the worker to end');
  await waitUntil(() => withMarker(running).length === 0 && withMarker(pending).length === 0, 10_000,
    () => `the worker's sandboxes to end (left: ${[...withMarker(running), ...withMarker(pending)].join(', ')})`);
  t.pass('no sandbox of the worker is left');
});
