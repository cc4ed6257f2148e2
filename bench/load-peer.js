// The child_process.fork and worker_threads rows of bench/plugin-load.ts: says "ready" as soon as it runs.
const { parentPort } = require('node:worker_threads');
if (parentPort) parentPort.postMessage('ready');
else process.send('ready');
