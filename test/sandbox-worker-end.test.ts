/**
 * The launch thread against the host's own threads: a worker thread that ends while its launches
 * are queued, finishing, or its sandboxes run; fds whose numbers the host reuses before a queued
 * launch runs; the host changing its ids while a launch has switched the launch thread's. Each is
 * an attack from the host's side of the boundary, where a mistake aborts the host, hands a sandbox
 * a file it was never given, or leaves the launch thread with other ids than the process.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import { Sandbox } from '../lib/sandbox/sandbox';
import { isRoot, waitUntil, withMarker, within } from './helpers/sandbox';
import { cgroupCount, childProcesses, fdCount } from './helpers/scale';

const sandboxModule = path.join(__dirname, '..', 'lib', 'sandbox', 'sandbox.js');
const quiet = { stdio: ['ignore', 'ignore', 'ignore'] as ['ignore', 'ignore', 'ignore'] };

/** This process's children, in any state (a zombie included), as "pid:state". */
const children = (): string[] => childProcesses().map((c) => `${c.pid}:${c.state}`);

function runWorker(source: string): Promise<unknown[]> {
  const messages: unknown[] = [];
  const worker = new Worker(source, { eval: true });
  worker.on('message', (m) => messages.push(m));
  return within(new Promise((resolve, reject) => {
    worker.once('error', reject);
    worker.once('exit', () => resolve(messages));
  }), 60_000, 'the worker to end');
}

t.test('workers ending while their launches finish and their sandboxes exit do not abort the host', async (t) => {
  // Each worker starts three launches and ends 0-12 ms later: some launches are queued, some finish
  // while the worker stops, some sandboxes are killed by its end. Before: a finished launch or an
  // exit delivered into the stopping worker failed to throw its error (napi_throw refused) and
  // node-addon-api aborted the whole process (FATAL ERROR, rc 134).
  const script = `
    const { Worker } = require('node:worker_threads');
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const quiet = ['ignore', 'ignore', 'ignore'];
    const src = \`
      const { Sandbox } = require(${JSON.stringify(sandboxModule)});
      for (let i = 0; i < 3; i++) Sandbox.launch({ command: ['/bin/sleep', '1000'], stdio: ['ignore', 'ignore', 'ignore'] }).then((s) => s.exited, () => {});
      setTimeout(() => process.exit(0), Math.floor(Math.random() * 12));\`;
    let stop = false, main = 0;
    (async () => { while (!stop) { await (await Sandbox.launch({ command: ['/bin/true'], stdio: quiet })).exited; main++; } })();
    let running = 0, done = 0;
    const N = 80;
    const next = () => {
      if (done === N) { stop = true; console.log(JSON.stringify({ workers: done, main })); setTimeout(() => process.exit(0), 300); return; }
      while (running < 8 && done + running < N) {
        running++;
        new Worker(src, { eval: true }).once('exit', () => { running--; done++; next(); });
      }
    };
    next();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 180_000 });
  t.equal(r.signal, null, `the host was not killed (stderr: ${r.stderr.slice(0, 400)})`);
  t.equal(r.status, 0, 'the host exited normally');
  t.notMatch(r.stderr, /FATAL ERROR/, 'no fatal error');
  const summary = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { workers?: number; main?: number };
  t.equal(summary.workers, 80, 'every worker ended');
  t.ok((summary.main ?? 0) > 0, 'the main thread launched meanwhile');
});

t.test('a launch still queued when its worker ends never runs and leaves no fd, cgroup or child', async (t) => {
  const limits = isRoot ? ", limits: { memory: '64M', pids: 16 }" : '';
  await within(Sandbox.launch({ command: ['/bin/true'], ...quiet }).then((s) => s.exited), 30_000, 'a warm-up launch');
  await new Promise((r) => setTimeout(r, 200));
  const before = { fds: fdCount(), cgroups: cgroupCount(), children: children().length };
  for (let round = 0; round < 3; round++) {
    // The worker's own launches keep the launch thread busy, so the last one is surely queued
    // when the worker ends; each has stdio pipes (host fds) and, as root, cgroups.
    await runWorker(`
      const { Sandbox } = require(${JSON.stringify(sandboxModule)});
      for (let i = 0; i < 12; i++) {
        Sandbox.launch({ command: ['/bin/sleep', '1000'], stdio: ['pipe', 'pipe', 'pipe']${limits} }).catch(() => {});
      }
      process.exit(0);`);
  }
  const now = () => ({ fds: fdCount(), cgroups: cgroupCount(), children: children().length });
  // Before: 57 fds and (as root) 20 cgroup directories left for 10 such launches, none ever freed.
  await waitUntil(() => {
    const n = now();
    return n.fds <= before.fds && n.cgroups <= before.cgroups && n.children <= before.children;
  }, 20_000, () => `the abandoned launches' leftovers to go (before ${JSON.stringify(before)}, now ${JSON.stringify(now())}, children ${children().join(' ')})`);
  t.pass(`no fd, cgroup or child left (${JSON.stringify(now())} against ${JSON.stringify(before)})`);
});

t.test('a running sandbox of an ended worker is killed and reaped, and its cgroups removed', async (t) => {
  const limits = isRoot ? ", limits: { memory: '64M', pids: 16 }" : '';
  const cgroupsBefore = cgroupCount();
  const messages = await runWorker(`
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const { parentPort } = require('node:worker_threads');
    Promise.all([0, 1, 2].map(() => Sandbox.launch({ command: ['/bin/sleep', '1000'], stdio: ['pipe', 'pipe', 'pipe']${limits} })))
      .then((sbs) => { parentPort.postMessage(sbs.map((s) => s.pid)); setImmediate(() => process.exit(0)); });`);
  const pids = messages[0] as number[];
  t.equal(pids.length, 3, 'the worker\'s sandboxes ran');
  // Before: each stayed a zombie of the host (killed, never reaped) for the host's life.
  const left = () => pids.filter((pid) => fs.existsSync(`/proc/${pid}`));
  await waitUntil(() => left().length === 0, 10_000, () => `the worker's sandboxes to be reaped (left: ${children().filter((c) => pids.includes(Number(c.split(':')[0]))).join(' ')})`);
  t.pass('killed and reaped');
  if (isRoot) {
    await waitUntil(() => cgroupCount() <= cgroupsBefore, 10_000, () => `their cgroups to be removed (${cgroupCount()} against ${cgroupsBefore})`);
    t.pass('their cgroups are removed');
  }
});

t.test('a queued launch gives the sandbox the file it was given, though the caller reuses the fd number first', async (t) => {
  // The launch runs later on the launch thread. Before: the plan named the caller's fd number, and
  // a file the host opened meanwhile under that number went to the sandbox instead.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-fd-reuse-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // The busy launches open and close fds on the launch thread meanwhile, so the number is not
  // always free for the host's next open: try again until the host's file took it (the case under
  // test); every attempt must still write into the file it was given.
  let reused = 0;
  for (let attempt = 0; attempt < 8 && reused === 0; attempt++) {
    const busy = Array.from({ length: 20 }, () => Sandbox.launch({ command: ['/bin/true'], ...quiet }).then((s) => s.exited));
    const givenPath = path.join(dir, `given-${attempt}`);
    const otherPath = path.join(dir, `host-only-${attempt}`);
    const given = fs.openSync(givenPath, 'a');
    const launched = Sandbox.launch({ command: ['/bin/sh', '-c', 'echo sandbox >&5'], ...quiet, fds: [{ fd: given, target: 5 }] });
    fs.closeSync(given);
    const other = fs.openSync(otherPath, 'a');
    if (other === given) reused++;
    const sb = await within(launched, 30_000, 'the launch');
    t.equal((await sb.exited).code, 0, 'the sandbox wrote to fd 5');
    fs.closeSync(other);
    await Promise.all(busy);
    t.equal(fs.readFileSync(givenPath, 'utf8'), 'sandbox\n', 'into the file it was given');
    t.equal(fs.readFileSync(otherPath, 'utf8'), '', 'not into the host\'s file');
  }
  t.equal(reused, 1, 'the host\'s other file took the number');
});

t.test('a synchronous spawn goes ahead of the queued launches', async (t) => {
  // Its caller's event loop stands still until it is done. Before: it waited for the whole queue
  // (58 ms behind 10 launches, 191 ms behind 40), so it started after all of them.
  const queued = Array.from({ length: 30 }, () => Sandbox.launch({ command: ['/bin/true'], ...quiet }));
  const sync = Sandbox.spawn({ command: ['/bin/true'], ...quiet });
  const sandboxes = await within(Promise.all(queued), 60_000, 'the queued launches');
  await Promise.all([sync, ...sandboxes].map((s) => s.exited));
  // Pids rise in the order processes are made.
  const later = sandboxes.filter((s) => s.pid > sync.pid).length;
  t.ok(later >= 25, `started before ${later} of the 30 launches queued ahead of it`);
});

t.test('the host changing its ids while launches run leaves every thread with the same ids', { skip: isRoot ? false : 'needs root: setegid, and launches that switch the launch thread\'s ids' }, async (t) => {
  // glibc applies setegid() to every thread by signalling each; within the launch thread's own
  // switch of its ids (the clone, the bind sources' lookups) that used to land and then be undone
  // by the switch back, or make the switch back fail (abort). Run in a child: that abort would end
  // the test runner.
  const script = `
    const fs = require('node:fs');
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const ids = () => new Set(fs.readdirSync('/proc/self/task').map((tid) => {
      try { const s = fs.readFileSync('/proc/self/task/' + tid + '/status', 'utf8'); return /Uid:.*/.exec(s)[0] + ' ' + /Gid:.*/.exec(s)[0] + ' ' + /Groups:.*/.exec(s)[0]; } catch { return 'gone'; }
    }).filter((x) => x !== 'gone'));
    (async () => {
      const o = { command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] };
      for (let round = 0; round < 100; round++) {
        const launches = Array.from({ length: 4 }, () => Sandbox.launch(o).then((s) => s.exited));
        const gid = 4000 + round;
        for (let k = 0; k < 10; k++) {
          process.setegid(gid); await new Promise((r) => setImmediate(r));
          process.setegid(0); await new Promise((r) => setImmediate(r));
        }
        process.setegid(gid);
        await Promise.all(launches);
        const seen = ids();
        if (seen.size !== 1) { console.log(JSON.stringify({ round, seen: [...seen] })); process.exit(3); }
        process.setegid(0);
      }
      console.log(JSON.stringify({ rounds: 100 }));
    })().catch((e) => { console.log(String(e && e.stack)); process.exit(4); });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 180_000 });
  t.equal(r.signal, null, `the host was not killed (stderr: ${r.stderr.slice(0, 400)})`);
  t.equal(r.status, 0, `every thread kept the process's ids: ${r.stdout.trim()}`);
  t.match(r.stdout, /"rounds":100/, 'all rounds ran');
});

t.test('a violation listener that throws does not keep the sandbox\'s exit, or later launches, from being delivered', { skip: isRoot ? false : 'needs root: a memory limit' }, async (t) => {
  // The kernel's OOM event reaches JS from a libuv callback; a throw there used to stay stored in
  // the addon's environment, where it blocked every later call into JS: the killed sandbox's exit
  // (and any other sandbox's exit or finished launch) was dropped, its `exited` never settled, and
  // the listener's error surfaced nowhere. Now it is an uncaught exception like any callback's.
  const script = `
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const uncaught = [];
    process.on('uncaughtException', (e) => uncaught.push(e.message));
    const sb = Sandbox.spawn({ command: ['/bin/sh', '-c', 'x=$(head -c 300000000 /dev/zero | tr "\\\\0" a); echo survived'],
      limits: { memory: '32M' }, stdio: ['ignore', 'ignore', 'ignore'] });
    sb.on('violation', () => { throw new Error('bug in a violation listener'); });
    const timer = setTimeout(() => { console.log(JSON.stringify({ settled: false, uncaught })); process.exit(0); }, 20000);
    sb.exited.then(async (r) => {
      const after = await Promise.all(Array.from({ length: 20 }, () => Sandbox.launch({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] }).then((s) => s.exited)));
      clearTimeout(timer);
      console.log(JSON.stringify({ settled: true, signal: r.signal, violation: r.violation && r.violation.kind, after: after.filter((x) => x.code === 0).length, uncaught }));
    });`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { settled?: boolean; signal?: string; violation?: string; after?: number; uncaught?: string[] };
  t.equal(out.settled, true, `the exit was delivered (${r.stdout.trim()} ${r.stderr.slice(0, 300)})`);
  t.equal(out.signal, 'SIGKILL', 'killed by the kernel');
  t.equal(out.violation, 'memory', 'for its memory');
  t.equal(out.after, 20, 'launches after it are delivered too');
  t.same(out.uncaught, ['bug in a violation listener'], 'the listener\'s error surfaced as an uncaught exception');
});

t.test('threads spawning synchronously in a loop do not hold back the launches of another', async (t) => {
  // Synchronous launches go first, but never more than a few in a row while a launch() waits.
  // Before (synchronous launches pushed to the front of one queue): four workers spawning in a loop
  // held every launch() of the main thread back for as long as they went on (4 launches in 4 s
  // against their ~1,400 spawns).
  const workers: Array<Promise<unknown[]>> = [];
  const started: Array<Promise<void>> = [];
  for (let i = 0; i < 4; i++) {
    let ready!: () => void;
    started.push(new Promise<void>((r) => (ready = r)));
    const worker = new Worker(`
      const { Sandbox } = require(${JSON.stringify(sandboxModule)});
      const { parentPort } = require('node:worker_threads');
      (async () => {
        parentPort.postMessage('started');
        const end = Date.now() + 2000;
        let n = 0;
        const exits = [];
        while (Date.now() < end) {
          exits.push(Sandbox.spawn({ command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] }).exited);
          n++;
          await new Promise((r) => setImmediate(r));
        }
        await Promise.all(exits);
        parentPort.postMessage(n);
        process.exit(0);
      })();`, { eval: true });
    const messages: unknown[] = [];
    worker.on('message', (m) => (m === 'started' ? ready() : messages.push(m)));
    workers.push(within(new Promise((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', () => resolve(messages));
    }), 60_000, 'a spawning worker to end'));
  }
  await Promise.all(started);
  await new Promise((r) => setTimeout(r, 100)); // their loops fill the queue first
  let mainDone = 0;
  let stop = false;
  const main = (async () => {
    while (!stop) {
      await (await Sandbox.launch({ command: ['/bin/true'], ...quiet })).exited;
      mainDone++;
    }
  })();
  const spawned = (await Promise.all(workers)).reduce((sum, m) => sum + (m[0] as number), 0);
  const whileWorkersRan = mainDone;
  stop = true;
  await main;
  // At most 4 synchronous launches go ahead of each asynchronous one: about one in five is the
  // main thread's. At least one in twenty, with margin for the scheduling of this machine.
  t.ok(whileWorkersRan * 20 >= spawned, `the main thread launched ${whileWorkersRan} sandboxes while the workers spawned ${spawned}`);
});

t.test('workers launching with limits at once each get cgroups of their own', { skip: isRoot ? false : 'needs root: cgroup limits' }, async (t) => {
  // Each worker has its own copy of the module that names cgroups; two of them used to make the
  // same warden.<pid>.<n>, and the second mkdir failed (EEXIST).
  // One after the other in each worker, each running a while: the workers' names interleave.
  const results = await Promise.all([0, 1, 2].map(() => runWorker(`
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const { parentPort } = require('node:worker_threads');
    (async () => {
      const exits = [];
      for (let i = 0; i < 4; i++) {
        const sb = await Sandbox.launch({ command: ['/bin/sleep', '0.5'], stdio: ['ignore', 'ignore', 'ignore'], limits: { memory: '64M', pids: 16 } });
        exits.push(sb.exited);
      }
      return Promise.all(exits);
    })().then((rs) => parentPort.postMessage(rs.map((r) => r.code)), (e) => parentPort.postMessage(String(e && e.message)))
      .finally(() => setTimeout(() => process.exit(0), 50));`)));
  t.same(results.map((m) => m[0]), [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], 'every launch ran');
});

t.test('at a worker\'s end, what its sandbox left running in its cgroup is killed too', { skip: isRoot ? false : 'needs root: cgroup limits' }, async (t) => {
  // Without a PID namespace nothing ends a sandbox's other processes with its first: a daemon it
  // started (its own session) outlived the worker's end, which killed only the first process, and
  // kept the sandbox's cgroups from being removed.
  const marker = `warden-worker-daemon-${process.pid}`;
  const cgroupsBefore = cgroupCount();
  const messages = await runWorker(`
    const { Sandbox } = require(${JSON.stringify(sandboxModule)});
    const { parentPort } = require('node:worker_threads');
    Sandbox.launch({ command: ['/bin/sh', '-c', 'setsid /bin/sh -c "sleep 1000; echo ${marker}" & sleep 1000'], namespaces: { pid: false },
      stdio: ['ignore', 'ignore', 'ignore'], limits: { memory: '64M', pids: 16 } })
      .then((sb) => { parentPort.postMessage(sb.pid); setTimeout(() => process.exit(0), 300); });`);
  t.equal(typeof messages[0], 'number', 'the sandbox ran');
  const daemons = (): number[] => withMarker(marker);
  await waitUntil(() => daemons().length === 0, 10_000, () => `the sandbox's daemon to be killed (left: ${daemons().join(' ')})`);
  t.pass('the daemon is gone');
  await waitUntil(() => cgroupCount() <= cgroupsBefore, 10_000, () => `the sandbox's cgroups to be removed (${cgroupCount()} against ${cgroupsBefore})`);
  t.pass('its cgroups are removed');
});
