/** The native side of the channel (native/channel_binding.cc), typed. */
import { requireAddon } from '../native-file';

export interface ChildFds {
  memfd: number;
  hostEfd: number;
  sandboxEfd: number;
  aliveWrite: number;
  ringSize: number;
  maxMessage: number;
}

export interface EndpointOptions {
  side?: 'host' | 'sandbox';
  ringSize?: number;
  maxMessage?: number;
  memfd?: number;
  ownEfd?: number;
  peerEfd?: number;
}

/**
 * A received message: its length in `rxBuffer` (valid until the next receive on this endpoint),
 * or a Buffer of its own when it is larger than rxBuffer.
 */
export type Received = number | Buffer;

export interface StartOptions {
  /** After each message, spin (blocking) up to this long for the next before returning to the loop. */
  spinUs?: number;
  /** After a send or a message, poll the ring from the event loop (not blocking it) this long before sleeping. */
  idleSpinUs?: number;
  /** Messages delivered per event-loop turn. */
  budget?: number;
  /** And no more than this long per turn (0: only `budget` bounds it). */
  turnUs?: number;
  /**
   * Deliver nothing while more than this many bytes wait in the outgoing queue for the peer to
   * read them (0: never pause). A peer that sends and never reads stops there.
   */
  pauseBytes?: number;
}

export const STATE_HOLD = 0;
export const STATE_BUSY = 1;
export const STATE_PAUSE = 2;
export const STATE_SPIN_ONCE = 3;

export interface NativeEndpoint {
  /** Scratch the envelope of the next message is written into (see send's envLen). */
  readonly txBuffer: Buffer;
  /** Scratch small received messages are copied into. */
  readonly rxBuffer: Buffer;
  /**
   * Sends `envLen` bytes of txBuffer (none when negative) followed by `parts`. true: in the ring;
   * false: queued (the envelope copied, the parts kept by reference), finished as the peer reads.
   */
  send(envLen: number, parts?: Uint8Array[]): boolean;
  /**
   * BLOCKING: send (waiting for room), then receive the next message, spinning `spinUs` then
   * sleeping on a futex, up to `timeoutMs` in all. undefined on timeout, null once the peer closed.
   */
  call(envLen: number, parts: Uint8Array[] | undefined, timeoutMs: number, spinUs: number): Received | undefined | null;
  /** Next message, undefined when none is complete, null once the peer closed the channel. */
  recv(): Received | undefined | null;
  /** BLOCKING: like recv(), spinning `spinUs` then sleeping on a futex, up to `timeoutMs`. */
  recvWait(timeoutMs: number, spinUs: number): Received | undefined | null;
  /**
   * Starts delivering from the event loop: onEvent(message), onEvent(null) when the peer closed,
   * onEvent(-1) when it exited, onEvent(-2, why) when it broke the framing.
   */
  start(onEvent: (m: Received | null, detail?: string) => void, options?: StartOptions): void;
  /**
   * Written by JS, read by the endpoint when it next runs (no crossing needed):
   * state[STATE_HOLD] > 0 keeps the event loop alive (pending calls, or a runner that lives for its
   * channel; updateRef() applies it at once); state[STATE_BUSY] > 0 says handlers wait on
   * promises, which need the event loop, so the endpoint does not spin for the next message;
   * state[STATE_PAUSE] > 0 holds delivery back (throttling the peer) until it is 0 and resume();
   * state[STATE_SPIN_ONCE] > 0 makes the spin after the next message that many us long, once.
   */
  readonly state: Int32Array;
  updateRef(): void;
  /** Delivery may go on (after STATE_PAUSE went back to 0): from the next event-loop turn. */
  resume(): void;
  peerAlive(): boolean;
  childFds(): ChildFds;
  /** Closes the host's copies of the fds only the sandbox needs (after spawning it). */
  releaseChildFds(): void;
  close(): void;
  readonly queued: number;
  /** Bytes of the messages in the outgoing queue. */
  readonly queuedBytes: number;
}

interface Addon {
  ChannelEndpoint: new (options: EndpointOptions) => NativeEndpoint;
  /** The runner's process only: serve large allocations (received messages) from reused heap pages. */
  reuseLargeAllocations(): boolean;
  /** Stacks a seccomp program (compileSeccomp(policy, { stacked: true })) on every thread of this process. */
  restrictSelf(program: Buffer): void;
  /** The host: puts a runner's thread in SCHED_BATCH, so its wake-ups do not preempt the host (native/runner_scheduling.cc). Throws ERR_RUNNER_SCHEDULING with errno. */
  setBatchScheduling(tid: number): void;
}

let addon: Addon | undefined;

/** The addon is loaded lazily and from the package itself (the runner loads it read-only inside the sandbox). */
export function loadAddon(): Addon {
  if (addon === undefined) {
    addon = requireAddon() as Addon;
  }
  return addon;
}
