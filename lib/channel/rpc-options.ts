/**
 * The options and outcomes of the RPC peer's API (rpc.ts): what a caller passes and what a
 * violation reports.
 */
import type { CancelSource } from './call-context';
import type { PeerLimits } from './peer-limits';

export interface CallOptions {
  /** Milliseconds; 0 means none. Defaults to the peer's `timeout`. */
  timeout?: number;
  signal?: AbortSignal;
  /** Like `signal`, cheaper: the Context of the call this one is made for (see CancelSource). */
  cancel?: CancelSource;
}

export interface RpcOptions {
  /** Default per-call timeout in ms (0: none). */
  timeout?: number;
  /**
   * After each message, spin (blocking this thread) up to this many microseconds for the next one
   * before going back to the event loop. Used by the runner (its CPU, its cgroup); the host leaves
   * it 0 so its event loop is never blocked.
   */
  spinUs?: number;
  /**
   * After a send or a received message, while calls of ours await answers, keep the event loop
   * polling the ring (it keeps running timers and I/O, but does not sleep) up to this many
   * microseconds before sleeping on the eventfd, so a quick answer costs no wake-up. Shrinks (to
   * an eighth) while answers are slow.
   */
  idleSpinUs?: number;
  /** Messages handled per event-loop turn, so a flooding peer cannot starve timers and I/O. */
  budget?: number;
  /** Keep the process alive while the channel is open (the runner). Otherwise only while calls are pending. */
  keepAlive?: boolean;
  /** Bounds of what the peer may cost this side (the host of an untrusted plugin). Default: none. */
  limits?: PeerLimits;
}

/** A peer that broke the protocol or flooded the host (the sandbox's Violation has the same kinds). */
export interface ChannelViolation {
  kind: 'protocol' | 'flood';
  message: string;
}
