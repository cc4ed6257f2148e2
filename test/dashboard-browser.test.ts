/**
 * The dashboard in a real headless Chromium (Debian's chromium, driven by playwright-core) against
 * a live PluginHost with real plugins: what an operator sees, live, and what an attacker cannot do.
 */
import * as fs from 'node:fs';
import t from 'tap';

import { PluginWorld } from './helpers/plugins';

const CHROMIUM = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
const asRoot = process.getuid?.() === 0;
const MiB = 1024 * 1024;
// Predicates run in the page (the project compiles without the DOM's types). Function predicates,
// not strings: the page's CSP forbids evaluating strings, which is part of what is tested.
declare const document: { getElementById(id: string): { dataset: Record<string, string>; textContent: string } };
const XSS = '<img src=x onerror=alert(1)>';
const HOOKS = [
  { name: 'alloc', mode: 'parallel' as const, timeout: 20000 },
  { name: 'boom', mode: 'parallel' as const, timeout: 3000 },
];

t.test('the dashboard in a browser', { skip: CHROMIUM === undefined ? 'no chromium installed (apt-get install chromium)' : false }, async (t) => {
  const { chromium } = await import('playwright-core');
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('grower', {
    code: `const keep = []; exports.activate = (h) => { h.hook('alloc', (n) => { for (let i = 0; i < n; i++) keep.push(Buffer.alloc(1 << 20, 1)); return keep.length; }); };`,
    hooks: ['alloc'],
  });
  w.writePlugin('breaker', { code: `exports.activate = (h) => { h.hook('boom', () => process.exit(3)); };`, hooks: ['boom'] });
  // A name the manifest check refuses: it reaches the page only inside the refusal's audit line.
  w.writePlugin(XSS, { code: 'exports.activate = () => {};' });
  for (const n of ['grower', 'breaker']) await w.trust(n, { limits: { memory: 256 * MiB, pids: 64 } });
  await w.publish();
  const host = w.host({ hooks: HOOKS, observe: { intervalMs: 300 } });
  t.teardown(() => host.close());
  await host.start();
  const { url, port, token } = await host.dashboard.listen({ pushMs: 300 });
  const origin = `http://127.0.0.1:${port}`;

  // Without the token, with a wrong one, or through another Host name: refused.
  t.equal((await fetch(`${origin}/api/usage`)).status, 401, 'no token: 401');
  t.equal((await fetch(`${origin}/api/usage`, { headers: { authorization: `Bearer ${token}x` } })).status, 401, 'wrong token: 401');
  t.equal((await fetch(`${origin}/?token=${encodeURIComponent(token.slice(0, -1))}`)).status, 401, 'wrong token in the address: 401');
  t.equal((await fetch(`${origin}/api/usage`, { headers: { authorization: `Bearer ${token}` } })).status, 200, 'the token: 200');
  const page0 = await fetch(`${origin}/api/usage`, { headers: { authorization: `Bearer ${token}` } });
  t.match(page0.headers.get('content-security-policy'), /default-src 'none'; script-src 'self'/, 'strict CSP');

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: asRoot ? ['--no-sandbox'] : [] });
  t.teardown(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));

  const denied = await page.goto(`${origin}/`);
  t.equal(denied?.status(), 401, 'the browser without the token: 401');

  await page.goto(url);
  t.equal(new URL(page.url()).search, '', 'the token left the address bar');
  await page.waitForSelector('#plugins tbody tr[data-plugin="grower"]');
  await page.waitForSelector('#plugins tbody tr[data-plugin="breaker"]');
  const grower = await page.textContent('#plugins tbody tr[data-plugin="grower"]');
  t.match(grower, /grower.*active.*1\.0\.0.*test.*standard/, 'the plugins table shows the live host');
  t.equal(await page.textContent('#card-active'), '2', 'two active plugins');
  await page.evaluate('window.marker = 42');

  // A chart updates as the plugin allocates.
  await page.click('#plugins tbody tr[data-plugin="grower"]');
  const cgroups = host.usage().plugins.find((p) => p.name === 'grower')!.memory.bytes !== undefined;
  if (cgroups) {
    await page.waitForFunction(() => Number(document.getElementById('charts').dataset.lastMemory) > 0);
    const before = Number(await page.getAttribute('#charts', 'data-last-memory'));
    const shotBefore = await page.locator('#chart-memory').screenshot();
    await host.invoke('alloc', [64]);
    await page.waitForFunction((b: number) => Number(document.getElementById('charts').dataset.lastMemory) >= b, before + 60 * MiB, { timeout: 10000 });
    await page.waitForTimeout(400); // one more push: the line is drawn past the step
    const shotAfter = await page.locator('#chart-memory').screenshot();
    t.notOk(shotBefore.equals(shotAfter), 'the memory chart was redrawn with the allocation');
    t.pass(`memory in the chart went from ${(before / MiB).toFixed(1)} MiB to ≥ ${(before / MiB + 60).toFixed(1)} MiB`);
  } else {
    t.comment('memory charts need cgroup limits: not checked as an unprivileged user');
  }

  // A violation appears in the audit tab without a reload.
  await page.click('.tabs button[data-tab="audit"]');
  await host.invoke('boom');
  await page.waitForSelector('#audit tbody tr[data-event="violation"]', { timeout: 10000 });
  t.match(await page.textContent('#audit tbody tr[data-event="violation"]'), /warning.*violation.*breaker/, 'the violation row names breaker');
  t.equal(await page.evaluate('window.marker'), 42, 'no reload happened');
  await page.waitForFunction(() => document.getElementById('card-violations').textContent === '1');

  // Filters: what the table shows is what the host's audit log holds for the same filter.
  const rows = (): Promise<Array<{ severity: string; event: string; plugin: string }>> =>
    page.$$eval('#audit tbody tr', (trs) => trs.map((tr) => ({ severity: tr.children[1]!.textContent!, event: tr.children[2]!.textContent!, plugin: tr.children[3]!.textContent! })));
  const all = await rows();
  t.ok(all.length >= 5, `unfiltered: ${all.length} rows`);
  t.equal(all.length, Math.min(500, host.audit.events().length), 'unfiltered: every line the log holds');
  await page.selectOption('#f-plugin', 'breaker');
  const breakerRows = await rows();
  t.ok(breakerRows.length > 0 && breakerRows.every((r) => r.plugin === 'breaker'), 'plugin filter');
  t.equal(breakerRows.length, host.audit.events({ plugin: 'breaker' }).length, 'as many as the log holds for breaker');
  await page.selectOption('#f-severity', 'warning');
  const warnings = await rows();
  t.ok(warnings.length > 0 && warnings.every((r) => (r.severity === 'warning' || r.severity === 'critical') && r.plugin === 'breaker'), 'severity filter');
  t.equal(warnings.length, host.audit.events({ plugin: 'breaker', minSeverity: 'warning' }).length);
  await page.selectOption('#f-plugin', '');
  await page.selectOption('#f-severity', 'info');
  await page.fill('#f-event', 'load');
  const loads = await rows();
  t.ok(loads.length >= 2 && loads.every((r) => r.event === 'load'), 'event filter');
  await page.fill('#f-event', '');
  t.equal((await rows()).length, Math.min(500, host.audit.events().length), 'cleared filters show every line the log holds');

  // Text a plugin controls stays text: the refused directory's name shows as written, nothing runs.
  await page.selectOption('#f-severity', 'warning');
  await page.fill('#f-event', 'refused');
  const refused = await page.textContent('#audit tbody');
  t.ok(refused!.includes(XSS), 'the name is shown as text');
  t.equal(await page.$$eval('main img', (imgs) => imgs.length), 0, 'no <img> element was made of it');
  await page.waitForTimeout(300);
  t.same(dialogs, [], 'no dialog fired');
  t.same(problems.filter((p) => /Content Security Policy|Refused/.test(p)), [], 'nothing the page needs is blocked by its CSP');

  const shot = process.env.WARDEN_DASHBOARD_SCREENSHOT;
  if (shot !== undefined) {
    await page.fill('#f-event', '');
    await page.click('.tabs button[data-tab="plugins"]');
    await page.waitForTimeout(1500);
    await page.screenshot({ path: shot, fullPage: true });
  }
});
