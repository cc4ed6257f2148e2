/**
 * A plugin's manifest is read by the host at every discovery and reload: one of many MB, nested
 * deeply, or listing tens of thousands of hooks is refused with an error naming the file and the
 * field, at a bounded cost, and the other plugins load as usual.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import { readManifest } from '../../lib/plugins/manifest';
import { GOOD, HOOKS, HostMeter } from '../helpers/hostile';
import { PluginWorld } from '../helpers/plugins';

t.test('huge, deep and long manifests are refused at a bounded cost', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('good', { code: GOOD, hooks: ['ping'] });
  await w.trust('good');
  const base = { version: '1.0.0', hostApi: '^1.0.0' };
  const write = (name: string, text: string | ((fd: number) => void)) => {
    const dir = w.writePlugin(name, { code: GOOD });
    const file = path.join(dir, 'warden.json');
    if (typeof text === 'string') {
      fs.writeFileSync(file, text);
    } else {
      const fd = fs.openSync(file, 'w');
      text(fd);
      fs.closeSync(fd);
    }
    return file;
  };
  // 64 MiB (sparse: only a JSON start), 100,000 levels of arrays, and 30,000 distinct hook names
  // (deduplicated one by one, the old check was quadratic: seconds of the host's time).
  write('huge', (fd) => {
    fs.writeSync(fd, `{"name":"huge","version":"1.0.0","hostApi":"^1.0.0","description":"`);
    fs.ftruncateSync(fd, 64 << 20);
  });
  write('deep', JSON.stringify({ name: 'deep', ...base }).replace(/}$/, `,"description":${'['.repeat(100000)}${']'.repeat(100000)}}`));
  const hooks = Array.from({ length: 30000 }, (_, i) => `h${i}`);
  write('long', JSON.stringify({ name: 'long', ...base, hooks }));
  await w.publish();

  const expected: Record<string, RegExp> = {
    huge: /warden\.json: \$: is 67108864 bytes, larger than the 262144 a manifest may have/,
    deep: /warden\.json: \$: .*nested deeper than/,
    long: /warden\.json: hooks: lists more than 256 hooks/,
  };
  for (const [name, why] of Object.entries(expected)) {
    t.throws(() => readManifest(path.join(w.pluginsDir, name)), why, `${name}: refused with the file and the field`);
  }
  const meter = new HostMeter();
  const refused: Error[] = [];
  const host = w.host({ hooks: HOOKS });
  t.teardown(() => host.close());
  host.on('discovery-error', (e: Error) => refused.push(e));
  await host.start();
  meter.check(t, 'discovering the manifests');
  t.equal(refused.length, 3, 'the three are refused at discovery');
  for (const [name, why] of Object.entries(expected)) t.ok(refused.some((e) => why.test(e.message)), `${name}: ${refused.find((e) => why.test(e.message))?.message.slice(0, 120)}`);
  t.same((await host.invoke('ping', [])).values, ['pong'], 'the good plugin loaded and answers');
});

t.test('a manifest whose size the stat does not tell is read to its end, and refused past the bound', async (t) => {
  // The read is sized from fstat and grows as the file turns out longer (a file growing while it
  // is read; here proc files, whose stat size is 0): past the bound it is refused, not read on.
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  const dirOf = (name: string, target: string): string => {
    const dir = w.writePlugin(name, { code: GOOD });
    fs.rmSync(path.join(dir, 'warden.json'), { force: true });
    fs.symlinkSync(target, path.join(dir, 'warden.json'));
    return dir;
  };
  // A few bytes of valid JSON behind a stat size of 0: read whole, then judged by what it holds.
  t.throws(() => readManifest(dirOf('small', '/proc/sys/kernel/pid_max')), /warden\.json: \$: must be a JSON object/);
  // Megabytes behind a stat size of 0: refused at the bound.
  t.throws(() => readManifest(dirOf('endless', '/proc/kallsyms')), /warden\.json: \$: grew past the 262144 bytes a manifest may have/);
});
