/** The native side of the channel (native/channel_binding.cc), typed. */
import * as path from 'node:path';

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

export interface NativeEndpoint {
  /** Writes the message (parts back to back). true: in the ring; false: queued, finished as the peer reads. */
  send(parts: Uint8Array[]): boolean;
  /** BLOCKING: writes the message, waiting for ring space up to `timeoutMs`. */
  sendBlocking(parts: Uint8Array[], timeoutMs: number): void;
  /** Next message, undefined when none is complete, null once the peer closed the channel. */
  recv(): Buffer | undefined | null;
  /** BLOCKING: like recv(), spinning `spinUs` then sleeping on a futex, up to `timeoutMs`. */
  recvWait(timeoutMs: number, spinUs: number): Buffer | undefined | null;
  /** Starts watching the eventfd (and the peer's liveness) from the event loop. */
  start(onWake: () => void): void;
  ref(): void;
  unref(): void;
  peerAlive(): boolean;
  childFds(): ChildFds;
  /** Closes the host's copies of the fds only the sandbox needs (after spawning it). */
  releaseChildFds(): void;
  close(): void;
  readonly queued: number;
}

interface Addon {
  ChannelEndpoint: new (options: EndpointOptions) => NativeEndpoint;
  /** Stacks a seccomp program (compileSeccomp(policy, { stacked: true })) on every thread of this process. */
  restrictSelf(program: Buffer): void;
}

let addon: Addon | undefined;

/** The addon is loaded lazily and from the package itself (the runner loads it read-only inside the sandbox). */
export function loadAddon(): Addon {
  if (addon === undefined) {
    // dist/lib/channel → package root
    addon = require(path.join(__dirname, '..', '..', '..', 'build', 'Release', 'warden.node')) as Addon;
  }
  return addon;
}
