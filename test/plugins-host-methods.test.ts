/**
 * Host methods (PluginHostOptions.methods) get the call's context as `this`: the calling plugin's
 * name, the method, and the call's AbortSignal, which aborts when the call can no longer be
 * answered (the plugin is unloaded or breaks a limit), so the host's work stops with it.
 */
import t from 'tap';

import { PluginWorld, until } from './helpers/plugins';

t.test('this.signal reaches host methods and aborts when the plugin goes', async (t) => {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('caller', {
    code: `exports.activate = (host) => { host.on('go', () => { host.call('slow', 7).catch(() => {}); }); };`,
  });
  await w.trust('caller');
  await w.publish();
  const seen: Array<{ plugin: string; method: string; arg: unknown; hasSignal: boolean }> = [];
  let aborted: unknown;
  const host = w.host({
    methods: {
      slow(this, arg) {
        seen.push({ plugin: this.plugin, method: this.method, arg, hasSignal: this.signal instanceof AbortSignal });
        return new Promise((resolve) => {
          this.signal.addEventListener('abort', () => {
            aborted = this.signal.reason;
            resolve('stopped');
          });
        });
      },
    },
  });
  t.teardown(() => host.close());
  await host.start();
  host.process('caller')!.notify('go');
  await until(() => seen.length === 1, 10000, 'the host method to be called');
  t.same(seen[0], { plugin: 'caller', method: 'slow', arg: 7, hasSignal: true }, 'this: plugin, method and a signal');
  t.equal(aborted, undefined, 'not aborted while the call stands');
  await host.unload('caller');
  await until(() => aborted !== undefined, 5000, 'the signal to abort');
  t.match(aborted, { code: 'ERR_CHANNEL_CLOSED' }, 'aborted with the reason the call ended');
});
