export { RpcPeer } from './rpc';
export type { CallContext, CallOptions, Handler, RpcOptions, Violation } from './rpc';
export { loadAddon } from './addon';
export type { ChildFds, NativeEndpoint, Received, StartOptions } from './addon';
