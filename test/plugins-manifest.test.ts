/** Manifests, permissions and limits of plugins: parsing, the grant check, the sandbox options. */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import {
  decidePermissions, effectiveLimits, parsePermission, readManifest, sandboxOptionsFor, trustEntryLimits,
  PermissionDeniedError, PluginManifestError,
} from '../lib/plugins';

function dir(files: Record<string, string>): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-manifest-'));
  for (const [rel, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(d, rel)), { recursive: true });
    fs.writeFileSync(path.join(d, rel), text);
  }
  t.teardown(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const base = { name: 'hello', version: '1.0.0', hostApi: '^1.0.0' };

t.test('warden.json and the package.json section both work', async (t) => {
  const a = readManifest(dir({ 'warden.json': JSON.stringify({ ...base, hooks: ['greet'], permissions: ['net:outbound'], limits: { memory: '64M', callTimeout: '2s' } }), 'index.js': '' }));
  t.equal(a.name, 'hello');
  t.equal(path.basename(a.entry), 'index.js');
  t.same(a.hooks, ['greet']);
  t.same(a.permissions, [{ kind: 'net:outbound' }]);
  t.same(a.limits, { memory: 64 * 1024 * 1024, callTimeout: 2000 });
  const b = readManifest(dir({ 'package.json': JSON.stringify({ name: 'pkg', version: '2.0.0', main: 'lib/main.js', warden: { hostApi: '1.x' } }), 'lib/main.js': '' }));
  t.equal(b.name, 'pkg');
  t.equal(b.version, '2.0.0');
  t.match(b.entry, /lib\/main\.js$/);
});

t.test('bad manifests name the file and the field', async (t) => {
  const cases: Array<[Record<string, string>, string]> = [
    [{ 'index.js': '' }, '$'],
    [{ 'warden.json': '{not json', 'index.js': '' }, '$'],
    [{ 'warden.json': JSON.stringify({ ...base, name: 'Bad Name' }), 'index.js': '' }, 'name'],
    [{ 'warden.json': JSON.stringify({ ...base, version: '1.0' }), 'index.js': '' }, 'version'],
    [{ 'warden.json': JSON.stringify({ ...base, hostApi: 'whenever' }), 'index.js': '' }, 'hostApi'],
    [{ 'warden.json': JSON.stringify({ ...base, entry: '../outside.js' }), 'index.js': '' }, 'entry'],
    [{ 'warden.json': JSON.stringify({ ...base, entry: 'missing.js' }) }, 'entry'],
    [{ 'warden.json': JSON.stringify({ ...base, permissions: ['fs:read:relative'] }), 'index.js': '' }, 'permissions[0]'],
    [{ 'warden.json': JSON.stringify({ ...base, permissions: ['fs:read:/srv/../etc'] }), 'index.js': '' }, 'permissions[0]'],
    [{ 'warden.json': JSON.stringify({ ...base, permissions: ['root:everything'] }), 'index.js': '' }, 'permissions[0]'],
    [{ 'warden.json': JSON.stringify({ ...base, limits: { memory: 'lots' } }), 'index.js': '' }, 'limits.memory'],
    [{ 'warden.json': JSON.stringify({ ...base, limits: { disk: 5 } }), 'index.js': '' }, 'limits.disk'],
    [{ 'warden.json': JSON.stringify({ ...base, hooks: ['Bad Hook'] }), 'index.js': '' }, 'hooks[0]'],
    [{ 'warden.json': JSON.stringify({ ...base, dependencies: { hello: '^1' } }), 'index.js': '' }, 'dependencies.hello'],
    [{ 'warden.json': JSON.stringify({ ...base, surprise: true }), 'index.js': '' }, 'surprise'],
    [{ 'warden.json': JSON.stringify(base), 'package.json': JSON.stringify({ name: 'x', version: '1.0.0', warden: {} }), 'index.js': '' }, '$'],
    [{ 'package.json': JSON.stringify({ name: 'x', version: '1.0.0', warden: { name: 'y', hostApi: '^1' } }), 'index.js': '' }, 'warden.name'],
  ];
  for (const [files, field] of cases) {
    const err = t.throws(() => readManifest(dir(files))) as PluginManifestError;
    t.type(err, PluginManifestError);
    t.equal(err.field, field, `${err.message}`);
    t.equal(err.code, 'ERR_PLUGIN_MANIFEST');
  }
  const d = dir({ 'warden.json': JSON.stringify(base) });
  fs.symlinkSync('/etc/hostname', path.join(d, 'index.js'));
  t.throws(() => readManifest(d), { field: 'entry', message: /outside/ }, 'an entry symlinked out of the directory is refused');
});

t.test('permission grants cover requests; anything else is refused by name', async (t) => {
  const req = ['fs:read:/srv/data/reports', 'fs:write:/var/lib/app', 'net:outbound'].map(parsePermission);
  const ok = decidePermissions('p', req, ['fs:read:/srv/data', 'fs:write:/var/lib/app', 'net:outbound']);
  t.same(ok.decisions.map((d) => d.grantedBy), ['fs:read:/srv/data', 'fs:write:/var/lib/app', 'net:outbound']);
  t.same(decidePermissions('p', [parsePermission('fs:read:/var/lib/app/x')], ['fs:write:/var/lib/app']).decisions.length, 1, 'fs:write covers fs:read');
  const deny = (r: string, g: string[]): PermissionDeniedError => t.throws(() => decidePermissions('p', [parsePermission(r)], g)) as PermissionDeniedError;
  t.equal(deny('fs:write:/srv/data', ['fs:read:/srv/data']).permission, 'fs:write:/srv/data', 'fs:read does not cover fs:write');
  t.equal(deny('fs:read:/srv/database', ['fs:read:/srv/data']).permission, 'fs:read:/srv/database', 'a prefix that is not a parent does not cover');
  t.equal(deny('fs:read:/srv', ['fs:read:/srv/data']).permission, 'fs:read:/srv', 'a child grant does not cover its parent');
  t.equal(deny('net:outbound', []).code, 'ERR_PLUGIN_PERMISSION');
  t.equal(deny('sys:exec', ['net:outbound']).permission, 'sys:exec');
  t.throws(() => decidePermissions('p', [], ['fs:read:relative']), { code: 'ERR_PLUGIN_PERMISSION' }, 'a malformed grant is an error, not ignored');
  t.same(decidePermissions('p', [], ['net:outbound', 'sys:exec']).effective, [], 'granted but not requested: not given');
});

t.test('effective permissions become sandbox options', async (t) => {
  const o = sandboxOptionsFor(['fs:read:/srv/a', 'fs:write:/srv/a', 'fs:read:/srv/b', 'sys:exec'].map(parsePermission));
  t.same(o.binds, [{ source: '/srv/a', target: '/srv/a', writable: true }, { source: '/srv/b', target: '/srv/b', writable: false }]);
  t.equal(o.shareNet, false);
  t.equal(o.allowExec, true);
  t.same(sandboxOptionsFor([]), { binds: [], shareNet: false, network: undefined, allowExec: false }, 'nothing requested: nothing beyond the defaults');
});

t.test('network permissions: net:connect grants intersect, net:outbound is a policy, net:host shares the network', async (t) => {
  const req = ['net:connect:api.example.com:443', 'net:connect:a.cdn.example.com', 'net:connect:203.0.113.0/25:80'].map(parsePermission);
  const ok = decidePermissions('p', req, ['net:connect:api.example.com:400-500', 'net:connect:*.example.com', 'net:connect:203.0.113.0/24']);
  t.same(ok.decisions.map((d) => d.grantedBy), ['net:connect:api.example.com:400-500', 'net:connect:*.example.com', 'net:connect:203.0.113.0/24']);
  const deny = (r: string, g: string[]) => t.throws(() => decidePermissions('p', [parsePermission(r)], g)) as PermissionDeniedError;
  t.equal(deny('net:connect:api.example.com:80', ['net:connect:api.example.com:443']).code, 'ERR_PLUGIN_PERMISSION', 'another port');
  t.equal(deny('net:connect:example.com', ['net:connect:*.example.com']).code, 'ERR_PLUGIN_PERMISSION', 'a wildcard does not cover its own domain');
  t.equal(deny('net:connect:10.0.0.0/8', ['net:outbound']).code, 'ERR_PLUGIN_PERMISSION', 'net:outbound never opens a private range');
  t.equal(deny('net:host', ['net:outbound']).code, 'ERR_PLUGIN_PERMISSION', 'net:host must be granted by name');
  t.throws(() => parsePermission('net:connect:0x7f000001'), /numeric IPv4 form/);
  t.throws(() => parsePermission('net:connect:2001:db8::1'), /brackets/);
  const o = sandboxOptionsFor(req);
  t.same(o.network, { allow: ['api.example.com:443', 'a.cdn.example.com', '203.0.113.0/25:80'], outbound: false });
  t.equal(o.shareNet, false, 'a policy keeps the network namespace');
  t.same(sandboxOptionsFor([parsePermission('net:outbound')]).network, { allow: [], outbound: true });
  const h = sandboxOptionsFor([parsePermission('net:host')]);
  t.equal(h.shareNet, true);
  t.equal(h.network, undefined);
});

t.test('limits: requests are capped by the grant, else by the host defaults', async (t) => {
  const MiB = 1024 * 1024;
  t.same(effectiveLimits('p', { memory: 64 * MiB }, { memory: 128 * MiB }, { memory: 256 * MiB, pids: 64 }), { memory: 64 * MiB, pids: 64 });
  t.same(effectiveLimits('p', {}, { memory: 128 * MiB }, { memory: 256 * MiB }), { memory: 128 * MiB }, 'the trust entry overrides the default');
  const e = t.throws(() => effectiveLimits('p', { memory: 512 * MiB }, {}, { memory: 256 * MiB })) as PermissionDeniedError;
  t.equal(e.permission, 'limits.memory');
  t.same(trustEntryLimits('p', { memory: 1024, cpu: 500, callTimeout: 100 }), { memory: 1024, cpu: 0.5, callTimeout: 100 }, 'cpu is millicores in the trust list');
  t.throws(() => trustEntryLimits('p', { gpus: 1 }), { code: 'ERR_PLUGIN_PERMISSION', permission: 'limits.gpus' }, 'an unknown granted limit is refused, not ignored');
});
