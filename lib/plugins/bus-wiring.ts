/**
 * The bus (lib/bus) wired to one plugin's channel: the `$bus:*` and `$data:*` methods its runner
 * calls, each bound to the plugin's bus member, made when the plugin is prepared, so the sender
 * of every message is the record's name and nothing the plugin sends; and the peer through which
 * the bus reaches the running instance (events, service calls, violations).
 */
import type { Bus, BusMember, BusPeer } from '../bus';
import type { CallContext, CancelSource, Handler } from '../channel/rpc';
import { M_BUS_CALL, M_BUS_EVENT, M_BUS_PROVIDE, M_BUS_PUBLISH, M_BUS_SERVE, M_BUS_SUBSCRIBE, M_DATA_PREFIX } from '../runner-protocol';
import type { PluginInstance } from './instance';

/** The host methods of the bus for one plugin; `m` is the instance's member, fixed before it starts. */
export function busHandlersFor(bus: Bus, m: BusMember): Record<string, Handler> {
  const out: Record<string, Handler> = {
    [M_BUS_PUBLISH]: (topic, payload) => bus.publish(m, topic, payload),
    [M_BUS_SUBSCRIBE]: (topic) => {
      bus.subscribe(m, topic);
    },
    [M_BUS_PROVIDE]: (service) => {
      bus.provide(m, service);
    },
    [M_BUS_CALL]: function (this: CallContext, plugin, service, args) {
      // The caller's call: its cancel, or its channel closing, cancels the callee's call too. Its
      // Context (RpcPeer calls handlers with one), not its signal: an AbortController and its
      // listener per call cost more than the rest of the hop in the host.
      return bus.call(m, plugin, service, args, this as CallContext & CancelSource);
    },
  };
  for (const op of ['get', 'set', 'delete', 'list'] as const) {
    out[M_DATA_PREFIX + op] = (key, value) => bus.dataOp(m, op, key, value);
  }
  return out;
}

/** How the bus reaches `inst`; calls into it count as in flight, so a reload's drain waits for them. */
export function busPeerFor(inst: PluginInstance): BusPeer {
  return {
    deliver: (topic, from, payload, timeout) => inst.proc.callWith({ timeout }, M_BUS_EVENT, topic, from, payload),
    serve: (caller, service, args, o) => inst.track(inst.proc.callWith({ timeout: o.timeout, cancel: o.cancel }, M_BUS_SERVE, caller, service, args)),
    violation: (message) => inst.violation({ kind: 'flood', message: `bus: ${message}` }),
    live: () => !inst.retired && !inst.stopped,
  };
}
