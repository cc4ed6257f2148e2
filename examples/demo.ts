/**
 * npm run demo — a small host with seven plugins signed with a demo key:
 *
 *   greeter   well-behaved: transforms requests, reads the one file it was granted
 *   leaky     keeps memory from every request until its memory limit stops it
 *   escaper   tries to read host files, open a socket and run a program
 *   counter   updated from 1.0.0 to 2.0.0 while requests keep flowing
 *   fetcher   granted one HTTP API (net:connect), refused on the cloud metadata address
 *   prices    on the bus: provides the service quote, publishes price.changed, shares its menu
 *   shop      on the bus: calls prices/quote, subscribes to price.changed, reads prices' public data,
 *             and is refused prices' internal data (granted data:read:prices/public/ only)
 *
 * With --dashboard (npm run demo -- --dashboard [--port N]) the host keeps running after the tour, with
 * its dashboard on 127.0.0.1 and a request every second, until Ctrl-C.
 *
 * The plugins are copied to a temporary directory with a data file for greeter; greeter's manifest
 * names that directory (the ${DEMO_DATA} placeholder), so its permission is real. The demo key is
 * generated for this run and thrown away: nothing secret is in the repository.
 *
 * fetcher's API is a small server this demo starts on an address of this host (not loopback: a
 * sandbox's loopback is its own), with a DNS server on the host's loopback that answers the name
 * status.demo with the metadata address. No packet leaves this machine: the metadata address is
 * refused before anything is sent.
 */
import * as dgram from 'node:dgram';
import * as dns from 'node:dns';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';

import { readAuditLog } from '../lib/audit';
import { buildAnswer, parseQuery, RCODE_NXDOMAIN, TYPE_A } from '../lib/net/dns';
import { networkReport } from '../lib/sandbox/network-report';
import { PluginHost, type PluginStatusEvent } from '../lib/plugins';
import {
  addEntry, createTrustList, digestDirectory, generateSigningKey, serializeTrustList, signTrustList, TrustStore,
  type SigningKey, type TrustEntry,
} from '../lib/trust';

const EXAMPLES = path.resolve(__dirname, '..', '..', 'examples');
const out = (s = ''): boolean => process.stdout.write(`${s}\n`);
const section = (title: string): void => {
  out();
  out(`== ${title}`);
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await sleep(20);
  return cond();
}

function copyTree(from: string, to: string): void {
  fs.cpSync(from, to, { recursive: true });
  // The sandbox runs as an unprivileged uid: the plugin files must be world-readable.
  const walk = (p: string): void => {
    const st = fs.statSync(p);
    fs.chmodSync(p, st.isDirectory() ? 0o755 : 0o644);
    if (st.isDirectory()) for (const n of fs.readdirSync(p)) walk(path.join(p, n));
  };
  walk(to);
}

/** Replaces a plugin directory the way a deployment should: build beside it, then rename. */
function replaceDir(target: string, from: string): void {
  const staging = `${target}.new`;
  copyTree(from, staging);
  const old = `${target}.old`;
  fs.renameSync(target, old);
  fs.renameSync(staging, target);
  fs.rmSync(old, { recursive: true, force: true });
}

class DemoTrustList {
  private version = 0;
  private readonly entries: TrustEntry[] = [];
  constructor(
    private readonly key: SigningKey,
    readonly file: string,
  ) {}

  async grant(dir: string, trust: TrustEntry['trust'], permissions: string[], limits: Record<string, number>): Promise<void> {
    const m = JSON.parse(fs.readFileSync(path.join(dir, 'warden.json'), 'utf8')) as { name: string; version: string };
    this.entries.push({ name: m.name, version: m.version, digest: await digestDirectory(dir), publisher: 'demo', trust, permissions, limits });
  }

  async publish(): Promise<void> {
    let doc = createTrustList({ keys: [this.key], threshold: 1, expires: new Date(Date.now() + 3600_000), version: ++this.version });
    for (const e of this.entries) doc = addEntry(doc, e);
    doc = await signTrustList(doc, this.key);
    fs.writeFileSync(`${this.file}.tmp`, serializeTrustList(doc));
    fs.renameSync(`${this.file}.tmp`, this.file);
  }
}

interface DemoApi {
  /** The API's base URL and the grant that opens exactly it, or why the network part is skipped. */
  url?: string;
  grant?: string;
  skip?: string;
  close(): void;
}

/**
 * The API fetcher may call, on the first address of this host that is not loopback (an explicit IP
 * grant opens a host address; loopback in a sandbox is the sandbox's own), and the DNS server the
 * host asks for sandboxes: status.demo answers 169.254.169.254, every other name does not exist.
 */
async function startDemoApi(): Promise<DemoApi> {
  const net = await networkReport();
  if (net.mechanism === 'none') return { skip: `this host cannot enforce network policies: ${net.reason}`, close: () => {} };
  const addrs = Object.values(os.networkInterfaces()).flatMap((l) => l ?? []).filter((a) => !a.internal && !a.address.startsWith('fe80:'));
  const addr = addrs.find((a) => a.family === 'IPv4') ?? addrs[0];
  if (addr === undefined) return { skip: 'this host has no address besides loopback to serve the demo API on', close: () => {} };
  const api = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.setHeader('connection', 'close'); // closed at once, so the demo can show its close line
    res.end(JSON.stringify({ city: new URL(req.url ?? '/', 'http://x').searchParams.get('city'), forecast: 'rain', celsius: 7 }));
  });
  await new Promise<void>((r) => api.listen(0, addr.address, r));
  const port = (api.address() as { port: number }).port;
  const resolver = dgram.createSocket('udp4');
  resolver.on('message', (m, from) => {
    const q = parseQuery(m);
    if (q === null) return;
    const meta = q.name === 'status.demo';
    const answer = meta && q.type === TYPE_A ? buildAnswer(q, 0, [Buffer.from([169, 254, 169, 254])]) : buildAnswer(q, meta ? 0 : RCODE_NXDOMAIN);
    resolver.send(answer, from.port, from.address);
  });
  await new Promise<void>((r) => resolver.bind(0, '127.0.0.1', r));
  dns.setServers([`127.0.0.1:${resolver.address().port}`]);
  const host = addr.family === 'IPv4' ? addr.address : `[${addr.address}]`;
  return {
    url: `http://${host}:${port}`,
    grant: `${host}:${port}`,
    close: () => {
      api.close();
      resolver.close();
    },
  };
}

async function main(): Promise<void> {
  const asRoot = process.getuid?.() === 0;
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-demo-'));
  fs.chmodSync(root, 0o755);
  const plugins = path.join(root, 'plugins');
  const data = path.join(root, 'data');
  fs.mkdirSync(data, { mode: 0o755 });
  fs.writeFileSync(path.join(data, 'motd.txt'), 'Plugins run in kernel sandboxes here.\n', { mode: 0o644 });
  copyTree(path.join(EXAMPLES, 'plugins'), plugins);
  const demoApi = await startDemoApi();
  const fetcherManifest = path.join(plugins, 'fetcher', 'warden.json');
  if (demoApi.grant === undefined) fs.rmSync(path.join(plugins, 'fetcher'), { recursive: true });
  else fs.writeFileSync(fetcherManifest, fs.readFileSync(fetcherManifest, 'utf8').replace('${DEMO_API}', demoApi.grant));
  const greeterManifest = path.join(plugins, 'greeter', 'warden.json');
  fs.writeFileSync(greeterManifest, fs.readFileSync(greeterManifest, 'utf8').replace('${DEMO_DATA}', data));

  out(`warden plugin demo — host uid ${process.getuid?.()}${asRoot ? ' (root: each sandbox maps to a host uid of its own)' : ' (unprivileged: sandboxes through user namespaces)'}`);
  if (!asRoot) {
    out('  degraded as an ordinary user: no cgroup limits without delegation, so memory and pids limits');
    out('  fall back to rlimits (RLIMIT_AS, RLIMIT_NPROC). A leak then ends as a crash, not a memory violation.');
  }

  // The trust list: the demo key signs it; the host pins the key.
  const key = await generateSigningKey('demo');
  const trust = new DemoTrustList(key, path.join(root, 'trust.json'));
  await trust.grant(path.join(plugins, 'greeter'), 'standard', [`fs:read:${data}`], { memory: 256 << 20 });
  await trust.grant(path.join(plugins, 'leaky'), 'restricted', [], { memory: 96 << 20 });
  await trust.grant(path.join(plugins, 'escaper'), 'restricted', [], {});
  await trust.grant(path.join(plugins, 'counter'), 'standard', [], {});
  // Bus grants: each string the manifest declares (provides, consumes) must be granted here.
  await trust.grant(path.join(plugins, 'prices'), 'restricted', PRICES_GRANTS, {});
  await trust.grant(path.join(plugins, 'shop'), 'restricted', SHOP_GRANTS, {});
  if (demoApi.grant !== undefined) await trust.grant(path.join(plugins, 'fetcher'), 'standard', [`net:connect:${demoApi.grant}`, 'net:connect:status.demo:80'], {});
  await trust.publish();

  const auditFile = path.join(root, 'audit.jsonl');
  const host = new PluginHost({
    pluginDirs: [plugins],
    trust: { store: new TrustStore({ anchor: { keys: [key], threshold: 1 }, statePath: path.join(root, 'trust-state.json'), startOver: true /* a new host: no state file yet */ }), file: trust.file },
    hostApiVersion: '1.3.0',
    hooks: [
      { name: 'request', mode: 'waterfall', timeout: 2000 },
      { name: 'status', mode: 'parallel', timeout: 2000 },
      { name: 'egress', mode: 'parallel', timeout: 5000 },
      { name: 'reprice', mode: 'first', timeout: 2000 },
      { name: 'checkout', mode: 'first', timeout: 2000 },
    ],
    config: { greeter: { motdFile: path.join(data, 'motd.txt') }, fetcher: { api: demoApi.url } },
    audit: auditFile,
    watch: { debounceMs: 150 },
    warmPool: 2, // pre-started runners: reloads and later loads take one instead of starting node
    allowDegradedLimits: !asRoot,
  });
  const transitions: string[] = [];
  host.on('status', (e: PluginStatusEvent) => transitions.push(`${e.plugin}: ${e.previous} → ${e.status}${e.reason ? ` (${e.reason.kind}: ${e.reason.message})` : ''}`));
  const logs: string[] = [];
  host.on('log', (plugin: string, level: string, message: string) => logs.push(`[${plugin}] ${message}`));

  const t0 = Date.now();
  await host.start();
  section(`Loaded (verified against the signed trust list, each in its own sandbox) in ${Date.now() - t0} ms`);
  for (const p of host.plugins()) out(`  ${p.name.padEnd(8)} ${String(p.version).padEnd(6)} ${p.status.padEnd(7)} pid ${p.pid}  hooks: ${p.hooks.join(', ')}`);
  out('  (each plugin runs from a copy of exactly the files that were digested, at /plugin in its sandbox)');

  section('Hooks called: request (waterfall through every plugin, by priority)');
  for (const user of ['ann', 'bob', 'cy']) {
    const r = await host.invoke('request', [{ user, path: '/home' }]);
    const v = r.value as Record<string, unknown>;
    out(`  ${user}: headers=${JSON.stringify(v.headers)} counted=${v.counted} cached=${v.cached ?? '-'}${r.errors.length ? `  errors: ${r.errors.map((e) => `${e.owner}: ${e.error?.message}`).join('; ')}` : ''}`);
  }

  section('A violation and the unload: leaky keeps 16 MiB per request, its limit is 96 MiB');
  for (let i = 0; i < 12 && host.status('leaky') === 'active'; i++) {
    const r = await host.invoke('request', [{ user: 'load', path: '/big' }]);
    const err = r.errors.find((e) => e.owner === 'leaky');
    if (err) out(`  request ${i + 1}: leaky failed (${err.error?.code ?? err.error?.message}); the others answered: ${r.outcomes.filter((o) => o.ok).map((o) => o.owner).join(', ')}`);
  }
  await until(() => host.status('leaky') !== 'active', 5000);
  const leak = host.info('leaky');
  if (leak.status === 'active') out('  leaky is still loaded: without a cgroup its allocations fail at RLIMIT_AS instead (contained, not unloaded)');
  else out(`  leaky is ${leak.status}: ${leak.reason?.kind} — ${leak.reason?.message}`);
  out(`  the next request still works: ${JSON.stringify((await host.invoke('request', [{ user: 'ann' }])).value)}`);

  section('A refused escape: escaper (granted nothing)');
  const st = await host.invoke('status', []);
  for (const o of st.outcomes) {
    if (o.owner === 'escaper' && o.ok) for (const line of (o.value as { report: string[] }).report) out(`  ${line}`);
  }
  await until(() => host.status('escaper') !== 'active', 5000);
  const esc = host.info('escaper');
  out(`  then it tried to run /bin/sh: escaper is ${esc.status}${esc.reason ? `: ${esc.reason.kind} — ${esc.reason.message}` : ''}`);
  const greeterStatus = st.outcomes.find((o) => o.owner === 'greeter');
  out(`  greeter, in the same call, read its granted file: ${JSON.stringify((greeterStatus?.value as { motd?: string })?.motd)}`);

  section('Network by policy: fetcher is granted one API (net:connect), nothing else');
  if (demoApi.skip !== undefined) {
    out(`  skipped: ${demoApi.skip}`);
  } else {
    out(`  the API: ${demoApi.url} (an address of this host: closed to sandboxes unless an IP grant names it)`);
    out('  status.demo, also granted, now resolves to 169.254.169.254 (the cloud metadata endpoint)');
    const r = await host.invoke('egress', []);
    const fetcher = r.outcomes.find((o) => o.owner === 'fetcher');
    if (fetcher?.ok) for (const line of (fetcher.value as { report: string[] }).report) out(`  ${line}`);
    else out(`  fetcher did not answer: ${fetcher?.error?.message ?? host.info('fetcher').reason?.message ?? host.status('fetcher')}`);
    // The API connection is reported when the kernel frees its socket, with its bytes.
    const network = async () => (await readAuditLog(auditFile, { event: 'network' })).events;
    const end = Date.now() + 3000;
    while (!(await network()).some((e) => /^closed /.test(e.reason ?? '')) && Date.now() < end) await sleep(50);
    out('  its audit lines (event "network"):');
    for (const e of await network()) out(`    ${e.severity.padEnd(8)} ${e.reason}`);
  }

  await busExample(host, auditFile, logs);

  section('Hot reload: counter 1.0.0 → 2.0.0 while requests keep flowing');
  let calls = 0;
  let failed = 0;
  let stop = false;
  const versions = new Set<string>();
  const loop = (async () => {
    while (!stop) {
      const r = await host.invoke('request', [{ user: calls % 2 ? 'ann' : 'bob' }]);
      calls++;
      if (r.errors.some((e) => e.owner === 'counter')) failed++;
      versions.add(String((r.value as { counter?: string }).counter));
    }
  })();
  await sleep(200);
  const oldPid = host.info('counter').pid;
  replaceDir(path.join(plugins, 'counter'), path.join(EXAMPLES, 'updates', 'counter-v2'));
  out('  new files in place (not yet in the trust list: the old version keeps serving)');
  await sleep(400);
  await trust.grant(path.join(plugins, 'counter'), 'standard', [], {});
  await trust.publish();
  out('  trust list version 2 published with counter 2.0.0');
  const reloaded = await until(() => host.info('counter').version === '2.0.0' && host.status('counter') === 'active', 10000);
  await sleep(200);
  stop = true;
  await loop;
  out(`  ${reloaded ? 'reloaded' : 'NOT reloaded'}${host.info('counter').warm ? ' from the warm pool' : ''}: pid ${oldPid} → ${host.info('counter').pid}; ${calls} requests during the update, ${failed} failed; versions seen: ${[...versions].join(', ')}`);

  section('Status changes');
  for (const line of transitions) out(`  ${line}`);

  section('Plugin logs');
  for (const line of logs) out(`  ${line.replace(/\n/g, '\n    ')}`);

  if (process.argv.includes('--dashboard')) await serveDashboard(host);
  await host.close();
  demoApi.close();
  section(`Audit log (${auditFile}; also: warden audit --file ...)`);
  const { events, chainOk } = await readAuditLog(auditFile);
  for (const e of events) out(`  ${e.time.slice(11, 23)} ${e.severity.padEnd(8)} ${e.event.padEnd(10)} ${(e.plugin ?? '-').padEnd(8)} ${(e.reason ?? '').slice(0, 110)}`);
  out(`  ${events.length} events, hash chain ${chainOk ? 'intact' : 'BROKEN'}`);

  section('Shutdown');
  out(`  every plugin unloaded: ${host.plugins().map((p) => `${p.name} ${p.status}`).join(', ')}`);
  fs.rmSync(root, { recursive: true, force: true });
}

const PRICES_GRANTS = ['service:provide:quote', 'events:publish:price.changed'];
const SHOP_GRANTS = ['service:call:prices/quote', 'events:subscribe:price.changed', 'data:read:prices/public/'];

/**
 * The bus: prices and shop never reach each other; every call, event and data access goes through
 * the host on the sender's own channel, is checked against the sender's grants, and names the sender
 * as the host knows it. The application drives it through two hooks (reprice, checkout).
 */
async function busExample(host: PluginHost, auditFile: string, logs: string[]): Promise<void> {
  section('The bus: prices and shop talk only through the host, as their trust entries grant');
  out(`  prices is granted ${PRICES_GRANTS.join(', ')}`);
  out(`  shop   is granted ${SHOP_GRANTS.join(', ')}`);
  const reached = (await host.invoke('reprice', ['tea', 390])).value;
  const heard = (): string | undefined => logs.find((l) => l.startsWith('[shop] price.changed'));
  await until(() => heard() !== undefined, 3000);
  out(`  prices published price.changed to ${reached} subscriber${reached === 1 ? '' : 's'}; shop's handler logged: ${heard()?.slice('[shop] '.length) ?? 'nothing'}`);
  const r = await host.invoke('checkout', ['tea']);
  if (r.errors.length > 0 || r.value === undefined) {
    out(`  checkout failed: ${r.errors.map((e) => `${e.owner}: ${e.error?.message}`).join('; ') || 'no answer'}`);
    return;
  }
  const v = r.value as { quote: unknown; menu: unknown; internal: { refused?: string; message?: string } };
  out(`  shop called prices/quote('tea'): ${JSON.stringify(v.quote)}  (caller named by the host)`);
  out(`  shop read prices/public/menu (granted): ${JSON.stringify(v.menu)}`);
  out(`  shop read prices/internal/cost (not granted): ${v.internal.refused !== undefined ? `refused (${v.internal.refused})` : `NOT refused: ${JSON.stringify(v.internal)}`}`);
  const refusal = async () => (await readAuditLog(auditFile, { event: 'bus', plugin: 'shop' })).events;
  const end = Date.now() + 3000;
  while ((await refusal()).length === 0 && Date.now() < end) await sleep(50);
  for (const e of await refusal()) out(`    audit: ${e.severity.padEnd(8)} ${e.plugin}  ${e.reason}`);
}

/** Keeps the host running with its dashboard until SIGINT/SIGTERM, with a little traffic to watch. */
async function serveDashboard(host: PluginHost): Promise<void> {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : 0;
  const { url, token } = await host.dashboard.listen({ port });
  section('Dashboard (Ctrl-C to stop)');
  out(`  ${url}`);
  out(`  terminal view: warden top --url ${url.split('/?')[0]} --token ${token}`);
  out(`  Prometheus: host.metrics.register(registry) in your own host; JSON: host.usage()`);
  const traffic = setInterval(() => void host.invoke('request', [{ user: 'dashboard', path: '/tick' }]).catch(() => undefined), 1000);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  clearInterval(traffic);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
