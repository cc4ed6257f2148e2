/**
 * The final byte counts of connections handed to sandboxes, from the kernel's socket destroy
 * notifications (native/net_closes.cc). A dump of the socket table (tcpStates) has no counts for a
 * socket the sandbox already closed (TIME_WAIT, or gone), so a short connection had none; the
 * notification carries them as the kernel frees the socket.
 *
 * One watch per process, shared by every policy, open while handed-in connections are (and a few
 * seconds after): while it is open, the kernel queues a notification for every TCP socket the
 * host's network frees.
 */
import { addon } from '../native';

type OnClose = (state: number, sent: number, received: number) => void;

const handlers = new Map<number, OnClose>();
let running = false;
let unavailable: string | undefined;

function dispatch(cookie: number, state: number, sent: number, received: number): void {
  const h = handlers.get(cookie);
  if (h === undefined) return;
  handlers.delete(cookie);
  h(state, sent, received);
  stopWhenIdle();
}

// Stopped a while after the last connection closed, not at once: a sandbox that opens connection
// after connection would otherwise open and close the watch for each (work on its connect path).
const IDLE_MS = 5000;
let idleTimer: NodeJS.Timeout | undefined;

function stopWhenIdle(): void {
  if (!running || handlers.size > 0 || idleTimer !== undefined) return;
  idleTimer = setTimeout(() => {
    idleTimer = undefined;
    if (!running || handlers.size > 0) return;
    running = false;
    (addon().tcpCloseWatchStop as () => void)();
  }, IDLE_MS);
  idleTimer.unref();
}

/**
 * Calls `onClose` once, when the kernel frees the socket with this cookie (SO_COOKIE). False when
 * the host cannot watch (the reason is in closeWatchUnavailable()): the caller keeps its samples.
 */
export function watchClose(cookie: number, onClose: OnClose): boolean {
  if (unavailable !== undefined) return false;
  if (!running) {
    try {
      (addon().tcpCloseWatch as (cb: typeof dispatch) => void)(dispatch);
      running = true;
    } catch (e) {
      unavailable = (e as Error).message;
      return false;
    }
  }
  handlers.set(cookie, onClose);
  (addon().tcpCloseWatchAdd as (c: number) => void)(cookie);
  return true;
}

export function unwatchClose(cookie: number): void {
  if (!handlers.delete(cookie)) return;
  (addon().tcpCloseWatchDelete as (c: number) => void)(cookie);
  stopWhenIdle();
}

/** Delivers the notifications queued now (each policy's sweep calls it, once a second and at exit). */
export function drainCloses(): void {
  if (running) (addon().tcpCloseWatchDrain as () => void)();
}

/** Why the host cannot watch, once it tried; undefined otherwise. */
export function closeWatchUnavailable(): string | undefined {
  return unavailable;
}
