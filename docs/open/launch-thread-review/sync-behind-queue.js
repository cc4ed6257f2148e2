const { Sandbox } = require(require('path').join(__dirname, '../../../dist') + '/lib/sandbox/sandbox.js');
(async () => {
  const o = { command: ['/bin/true'], stdio: ['ignore','ignore','ignore'] };
  await (await Sandbox.launch(o)).exited;
  let t = process.hrtime.bigint(); const s0 = Sandbox.spawn(o); const alone = Number(process.hrtime.bigint() - t) / 1e6; await s0.exited;
  for (const n of [10, 40]) {
    const ps = Array.from({ length: n }, () => Sandbox.launch(o));
    t = process.hrtime.bigint(); const s = Sandbox.spawn(o); const behind = Number(process.hrtime.bigint() - t) / 1e6;
    const all = await Promise.all(ps); await Promise.all([s, ...all].map((x) => x.exited));
    console.log(`sync spawn alone ${alone.toFixed(1)} ms; behind ${n} queued launches: event loop blocked ${behind.toFixed(1)} ms`);
  }
})();
