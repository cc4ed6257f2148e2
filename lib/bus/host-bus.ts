/**
 * The application's side of the bus (PluginHost.bus). The application sends as HOST_SENDER, a name
 * no plugin can have, and needs no grant: it is the one that grants. Plugins' grants still decide
 * who receives what it publishes.
 */
import type { Bus, BusObserver } from './bus';

export class HostBus {
  constructor(private readonly bus: Bus) {}

  /** Publishes as the application; returns how many plugin subscribers it was handed to. */
  publish(topic: string, payload?: unknown): number {
    return this.bus.publish(undefined, topic, payload);
  }

  /** Sees every event on `topic`, with its stamped sender. Returns the function that stops it. */
  observe(topic: string, fn: BusObserver): () => void {
    return this.bus.observe(topic, fn);
  }

  /** Calls a plugin's service as the application (`this.caller` is '$host' in the plugin). */
  call(plugin: string, service: string, ...args: unknown[]): Promise<unknown> {
    return this.bus.call(undefined, plugin, service, args);
  }

  /** Shared data, any owner (keys 'OWNER/key'). */
  readonly data = {
    get: (key: string): unknown => this.bus.dataOp(undefined, 'get', key),
    set: (key: string, value: unknown): void => void this.bus.dataOp(undefined, 'set', key, value),
    delete: (key: string): boolean => this.bus.dataOp(undefined, 'delete', key) as boolean,
    list: (prefix: string): string[] => this.bus.dataOp(undefined, 'list', prefix) as string[],
  };

  /** Events dropped so far for `plugin`'s running instance because it was slow (undefined if not on the bus). */
  dropped(plugin: string): number | undefined {
    return this.bus.memberOf(plugin)?.dropped;
  }
}
