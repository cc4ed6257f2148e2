// A worker passes a file it opened (fs.openSync: Node closes it when the worker ends) to
// Sandbox.launch and ends while the launch waits on the launch thread. The main thread then opens
// a file of its own, which takes the freed number; the abandoned launch still runs, with that fd.
const fs = require('node:fs');
const { Worker } = require('node:worker_threads');
const D = require('path').join(__dirname, '../../../dist') + '';
const W5 = require('path').join(__dirname, 'w5'); // cc -static -nostdlib -o w5 w5.c
const { Sandbox } = require(D + '/lib/sandbox/sandbox.js');
const dir = require('fs').mkdtempSync(require('path').join(require('os').tmpdir(), 'warden-review-'));
fs.writeFileSync(`${dir}/worker-file.txt`, '');
fs.writeFileSync(`${dir}/host-secret.txt`, '');
(async () => {
  await (await Sandbox.launch({ command: ['/bin/true'] })).exited;
  // Keep the launch thread busy so the worker's launch is queued when the worker ends.
  const busy = Array.from({ length: 80 }, () => Sandbox.launch({ command: ['/bin/true'], stdio: ['ignore','ignore','ignore'] }).then((s) => s.exited));
  const w = new Worker(`
    const fs = require('node:fs');
    const { Sandbox } = require(${JSON.stringify(D + '/lib/sandbox/sandbox.js')});
    const fd = fs.openSync(${JSON.stringify(dir + '/worker-file.txt')}, 'a');
    require('node:worker_threads').parentPort.postMessage(fd);
    Sandbox.launch({ command: [${JSON.stringify(W5)}], binds: [{ source: ${JSON.stringify(W5)} }],
                     stdio: ['ignore','ignore','ignore'], fds: [{ fd, target: 5 }] }).catch(() => {});
    process.exit(0);`, { eval: true });
  let workerFd;
  w.on('message', (fd) => (workerFd = fd));
  await new Promise((r) => w.once('exit', r));
  const mine = Array.from({ length: 40 }, () => fs.openSync(`${dir}/host-secret.txt`, "a")).includes(workerFd) ? workerFd : -1;  // the host's own file
  console.log(`worker's fd was ${workerFd}; the host's new file got fd ${mine}`);
  await Promise.all(busy);
  await new Promise((r) => setTimeout(r, 1000));
  console.log('worker-file.txt:', JSON.stringify(fs.readFileSync(`${dir}/worker-file.txt`, 'utf8')));
  console.log('host-secret.txt:', JSON.stringify(fs.readFileSync(`${dir}/host-secret.txt`, 'utf8')));
  process.exit(0);
})();
