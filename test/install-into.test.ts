/**
 * `warden install SPEC --into DIR`: what DIR may be, checked before anything is copied or npm runs
 * (no network needed). DIR inside SPEC made the copy of SPEC copy its own copy until the path was
 * too long; a file or a symlink as DIR failed late with a bare errno (as root: after npm ran).
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { installPlugin } from '../lib/install/npm';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-install-into-'));
t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
const spec = path.join(root, 'p');
fs.mkdirSync(spec);
fs.writeFileSync(path.join(spec, 'package.json'), JSON.stringify({ name: 'p', version: '1.0.0' }));
fs.writeFileSync(path.join(spec, 'package-lock.json'), JSON.stringify({ name: 'p', version: '1.0.0', lockfileVersion: 3, requires: true, packages: { '': { name: 'p', version: '1.0.0' } } }));
// Never reached: every case is refused before npm runs.
const o = { registry: 'http://198.51.100.1:4873/' };

t.test('DIR inside SPEC (or SPEC itself, by another name): refused, nothing created', async (t) => {
  await t.rejects(installPlugin(spec, path.join(spec, 'out'), o), { code: 'ERR_INVALID_OPTION', message: /--into.*inside the plugin directory/ });
  t.same(fs.readdirSync(spec).sort(), ['package-lock.json', 'package.json'], 'SPEC untouched');
  fs.symlinkSync(spec, path.join(root, 'alias'));
  await t.rejects(installPlugin(spec, path.join(root, 'alias', 'deep', 'out'), o), { code: 'ERR_INVALID_OPTION', message: /inside the plugin directory/ }, 'through a symlink too');
  t.same(fs.readdirSync(spec).sort(), ['package-lock.json', 'package.json']);
});

t.test('DIR a file, or a symlink: refused naming --into', async (t) => {
  const file = path.join(root, 'file');
  fs.writeFileSync(file, 'x');
  await t.rejects(installPlugin(spec, file, o), { code: 'ERR_INVALID_OPTION', message: /--into.*not a directory/ });
  fs.mkdirSync(path.join(root, 'empty'));
  fs.symlinkSync(path.join(root, 'empty'), path.join(root, 'link'));
  await t.rejects(installPlugin(spec, path.join(root, 'link'), o), { code: 'ERR_INVALID_OPTION', message: /--into.*symlink/ });
  t.same(fs.readdirSync(path.join(root, 'empty')), [], 'nothing written through it');
  await t.rejects(installPlugin(spec, '/', o), { code: 'ERR_INVALID_OPTION', message: /not empty/ }, '/ is not empty');
});
