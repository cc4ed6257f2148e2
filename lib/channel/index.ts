export { PLUGIN_PEER_LIMITS, RpcPeer } from './rpc';
export type { CallContext, CallOptions, ChannelLimits, Handler, PeerLimits, RpcOptions, ChannelViolation } from './rpc';
export { PEER_LIMITS } from './codec';
export type { DecodeLimits } from './codec';
export { loadAddon } from './addon';
export type { ChildFds, NativeEndpoint, Received, StartOptions } from './addon';
