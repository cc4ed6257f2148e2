// Worker teardown while Sandbox.launch is pending / after it resolved: host fds, zombies, cgroups.
const fs = require('node:fs');
const { Worker } = require('node:worker_threads');
const D = require('path').join(__dirname, '../../../dist') + '';
const { listSandboxCgroups } = require(D + '/lib/limits');
const mode = process.argv[2] || 'pending';       // pending | running
const limits = process.argv[3] === 'limits';
const N = Number(process.argv[4] || 10);
const fdCount = () => fs.readdirSync('/proc/self/fd').length;
function zombies() {
  const out = [];
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const st = fs.readFileSync(`/proc/${n}/stat`, 'utf8');
      const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
      if (Number(f[1]) === process.pid) out.push(`${n}:${f[0]}`);
    } catch {}
  }
  return out;
}
const src = (mode) => `
  const { Sandbox } = require(${JSON.stringify(D + '/lib/sandbox/sandbox.js')});
  const opts = { command: ['/bin/sleep', '1000'], stdio: ['pipe','pipe','pipe'] ${limits ? ", limits: { memory: '64M', pids: 16 }" : ''} };
  ${mode === 'pending'
    ? `Sandbox.launch(opts).catch(()=>{}); process.exit(0);`
    : `Sandbox.launch(opts).then((sb) => { require('node:worker_threads').parentPort.postMessage(sb.pid); setImmediate(() => process.exit(0)); });`}
`;
(async () => {
  // warm up once in the main thread (host id lock, etc.)
  const { Sandbox } = require(D + '/lib/sandbox/sandbox.js');
  const sb = await Sandbox.launch({ command: ['/bin/true'] }); await sb.exited;
  await new Promise((r) => setTimeout(r, 300));
  const fds0 = fdCount(), cg0 = listSandboxCgroups().length, z0 = zombies().length;
  const t0 = Date.now();
  for (let i = 0; i < N; i++) {
    const w = new Worker(src(mode), { eval: true });
    w.on('error', (e) => console.log('worker error', e));
    await new Promise((r) => w.once('exit', r));
  }
  const dt = Date.now() - t0;
  await new Promise((r) => setTimeout(r, 2000));
  const kids = zombies();
  console.log(JSON.stringify({ mode, limits, N, workerMsTotal: dt, fdDelta: fdCount() - fds0,
    cgroupDelta: listSandboxCgroups().length - cg0, childrenOfHost: kids.length - z0, sample: kids.slice(0, 5) }));
  console.log('leftover cgroups:', listSandboxCgroups().join('\n'));
  process.exit(0);
})();
