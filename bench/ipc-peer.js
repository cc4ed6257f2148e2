// The other side of the child_process and worker_threads rows of bench/ipc.ts.
const { parentPort } = require('node:worker_threads');
const reply = (m) => (m.big ? { n: m.big.length } : { r: m.a + m.b });
if (parentPort) parentPort.on('message', (m) => parentPort.postMessage(reply(m)));
else process.on('message', (m) => process.send(reply(m.big ? { big: Buffer.from(m.big.data ?? m.big) } : m)));
