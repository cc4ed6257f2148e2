const { Worker } = require('node:worker_threads');
const D = require('path').join(__dirname, '../../../dist') + '';
const { Sandbox } = require(D + '/lib/sandbox/sandbox.js');
const N = Number(process.argv[2] || 100);
const src = `
  const { Sandbox } = require(${JSON.stringify(D + '/lib/sandbox/sandbox.js')});
  for (let i = 0; i < 3; i++) Sandbox.launch({ command: ['/bin/sleep','1000'], stdio: ['ignore','ignore','ignore'] }).then(s => s.exited).catch(()=>{});
  setTimeout(() => process.exit(0), Math.floor(Math.random() * 12));
`;
let mainOk = 0, stop = false;
(async () => { while (!stop) { const s = await Sandbox.launch({ command: ['/bin/true'], stdio: ['ignore','ignore','ignore'] }); await s.exited; mainOk++; } })();
(async () => {
  const t0 = Date.now();
  let running = 0, done = 0;
  await new Promise((resolve) => {
    const next = () => {
      if (done === N) return resolve();
      while (running < 8 && done + running < N) {
        running++;
        const w = new Worker(src, { eval: true });
        w.on('error', (e) => console.log('worker error', e.message));
        w.once('exit', () => { running--; done++; next(); });
      }
    };
    next();
  });
  stop = true;
  console.log(JSON.stringify({ workers: N, ms: Date.now() - t0, mainLaunches: mainOk }));
  setTimeout(() => process.exit(0), 500);
})();
