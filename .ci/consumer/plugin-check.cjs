'use strict';
// What both consumers do with the package: Sandbox.spawn runs a command and returns its output;
// PluginHost verifies a plugin against a trust list signed here, loads it in its sandbox and calls
// its hook.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

async function check(w, kind) {
  const sb = w.Sandbox.spawn({ command: ['/bin/echo', `sandboxed ${kind}`], stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  sb.stdout.on('data', (d) => { out += d; });
  const ended = new Promise((resolve) => sb.stdout.on('end', resolve));
  const { code } = await sb.exited;
  await ended;
  if (code !== 0 || out !== `sandboxed ${kind}\n`) throw new Error(`Sandbox.spawn: code ${code}, output ${JSON.stringify(out)}`);

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-consumer-'));
  fs.chmodSync(root, 0o755);
  try {
    const dir = path.join(root, 'plugins', 'doubler');
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(dir, 'warden.json'), JSON.stringify({ name: 'doubler', version: '1.0.0', hostApi: '^1.0.0', hooks: ['double'] }));
    fs.writeFileSync(path.join(dir, 'index.js'), "exports.activate = (host) => { host.hook('double', (n) => n * 2); };\n");
    const key = await w.generateSigningKey('consumer');
    let doc = w.createTrustList({ keys: [key], threshold: 1, expires: new Date(Date.now() + 3600_000), version: 1 });
    doc = w.addEntry(doc, { name: 'doubler', version: '1.0.0', digest: await w.digestDirectory(dir), publisher: 'ci', trust: 'restricted', permissions: [], limits: {} });
    doc = await w.signTrustList(doc, key);
    fs.writeFileSync(path.join(root, 'trust.json'), w.serializeTrustList(doc));
    const host = new w.PluginHost({
      pluginDirs: [path.join(root, 'plugins')],
      trust: { store: new w.TrustStore({ anchor: { keys: [key], threshold: 1 }, statePath: path.join(root, 'state.json'), startOver: true }), file: path.join(root, 'trust.json') },
      hostApiVersion: '1.0.0',
      hooks: [{ name: 'double', mode: 'first' }],
      allowDegradedLimits: process.getuid() !== 0,
    });
    await host.start();
    try {
      const r = await host.invoke('double', [21]);
      if (r.value !== 42) throw new Error(`PluginHost: hook answered ${JSON.stringify(r)}; status ${JSON.stringify(host.plugins())}`);
    } finally {
      await host.close();
    }
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
  console.log(`${kind}: Sandbox.spawn and a plugin hook work (node ${process.version})`);
}

module.exports = { check };
