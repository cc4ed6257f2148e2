/**
 * The dashboard against hostile input and hostile readers: a client that stops reading its event
 * stream while the host produces audit lines must be cut off, not buffered for without end; a
 * malformed cookie is a 401, not an exception in the host.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import t, { Test } from 'tap';

import { PluginWorld } from './helpers/plugins';

const TOKEN = 'a-token-of-sixteen-chars';

async function hostWithDashboard(t: Test) {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  await w.publish();
  const host = w.host({ dashboard: { token: TOKEN, pushMs: 100 } });
  t.teardown(() => host.close());
  await host.start();
  const { port } = new URL(host.dashboard.url!);
  return { host, port: Number(port) };
}

function get(port: number, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path, headers: { Host: `127.0.0.1:${port}`, ...headers } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

t.test('an event-stream client that stops reading is cut off; one that reads keeps its stream', async (t) => {
  const { host, port } = await hostWithDashboard(t);
  const request = `GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`;

  // The stalled reader: a socket that never reads after sending its request.
  const stalled = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => stalled.once('connect', r));
  stalled.write(request);
  stalled.pause();
  let stalledClosed = false;
  stalled.on('close', () => { stalledClosed = true; });
  stalled.on('error', () => undefined);

  // A reader that keeps up.
  const reader = net.connect(port, '127.0.0.1');
  let readBytes = 0;
  reader.on('data', (d) => { readBytes += d.length; });
  let readerClosed = false;
  reader.on('close', () => { readerClosed = true; });
  await new Promise<void>((r) => reader.once('connect', r));
  reader.write(request);
  await new Promise((r) => setTimeout(r, 200));

  // 64 MiB of audit lines, far more than the socket buffers of both ends hold.
  const reason = 'x'.repeat(4000);
  for (let i = 0; i < 16_000; i++) {
    host.audit.append({ severity: 'info', event: 'flood', reason });
    if (i % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  // A paused socket does not see its end: read now and count what the server still had for it.
  let stalledBytes = 0;
  stalled.on('data', (d: Buffer) => { stalledBytes += d.length; });
  stalled.resume();
  const deadline = Date.now() + 5000;
  while (!stalledClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.ok(stalledClosed, 'the server ended the stream of the client that stopped reading');
  t.ok(stalledBytes < 32 * 1024 * 1024, `the stalled client got only what the buffers held before the cut (${stalledBytes} bytes of 64 MiB)`);
  t.notOk(readerClosed, 'the client that reads is still connected');
  t.ok(readBytes > 1024 * 1024, `the reading client got the lines (${readBytes} bytes)`);
  reader.destroy();
  stalled.destroy();
});

t.test('a malformed cookie is refused with 401 and the host keeps serving', async (t) => {
  const { port } = await hostWithDashboard(t);
  t.equal(await get(port, '/api/usage', { Cookie: 'warden_dashboard=%E0%A4%A' }), 401, 'invalid percent-encoding: 401');
  t.equal(await get(port, '/api/usage', { Cookie: 'warden_dashboard=%' }), 401, 'a lone %: 401');
  t.equal(await get(port, '/api/usage', { Authorization: `Bearer ${TOKEN}` }), 200, 'the host still answers');
});

t.test('event streams are capped in number', async (t) => {
  const { port } = await hostWithDashboard(t);
  const open: http.ClientRequest[] = [];
  t.teardown(() => open.forEach((r) => r.destroy()));
  const codes: number[] = [];
  for (let i = 0; i < 33; i++) {
    codes.push(await new Promise<number>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: '/api/events', headers: { Host: `127.0.0.1:${port}`, Authorization: `Bearer ${TOKEN}` } }, (res) => resolve(res.statusCode ?? 0));
      req.on('error', reject);
      open.push(req);
    }));
  }
  t.same(codes.slice(0, 32), new Array(32).fill(200), 'the first 32 streams open');
  t.equal(codes[32], 503, 'the 33rd is refused');
});
