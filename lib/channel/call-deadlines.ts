/**
 * Per-call timeouts without a timer per call. Calls with the same timeout expire in the order they
 * were made: their deadlines wait in one FIFO per timeout, watched by one timer, instead of a timer
 * each (setTimeout + clearTimeout cost about as much as the rest of a call). Entries of settled
 * calls are dropped lazily.
 */

/** Deadlines of the calls made with one timeout, oldest first. */
interface Queue {
  ids: number[];
  at: number[];
  head: number;
  timer: NodeJS.Timeout | undefined;
}

export class CallDeadlines {
  private readonly queues = new Map<number, Queue>();

  /**
   * @param pending the calls still waiting for an answer (an id not in it has settled)
   * @param expired called once for each call whose deadline passed while it was pending
   */
  constructor(
    private readonly pending: ReadonlyMap<number, unknown>,
    private readonly expired: (id: number, timeout: number) => void,
  ) {}

  /** Call `id` times out `timeout` ms from now unless it settles first. */
  add(id: number, timeout: number): void {
    let q = this.queues.get(timeout);
    if (q === undefined) {
      q = { ids: [], at: [], head: 0, timer: undefined };
      this.queues.set(timeout, q);
    }
    while (q.head < q.ids.length && !this.pending.has(q.ids[q.head])) q.head++;
    if (q.head === q.ids.length) {
      q.ids.length = 0;
      q.at.length = 0;
      q.head = 0;
    } else if (q.ids.length - q.head > 2 * this.pending.size + 64) {
      // A long call at the head keeps many settled ones behind it: keep only the pending.
      const ids: number[] = [];
      const at: number[] = [];
      for (let i = q.head; i < q.ids.length; i++) {
        if (this.pending.has(q.ids[i])) {
          ids.push(q.ids[i]);
          at.push(q.at[i]);
        }
      }
      q.ids = ids;
      q.at = at;
      q.head = 0;
    }
    q.ids.push(id);
    q.at.push(performance.now() + timeout);
    if (q.timer === undefined) this.arm(timeout, q);
  }

  /** Stops every timer (the channel closed; its pending calls were failed). */
  clear(): void {
    for (const q of this.queues.values()) clearTimeout(q.timer);
    this.queues.clear();
  }

  private arm(timeout: number, q: Queue): void {
    const delay = Math.max(0, q.at[q.head] - performance.now());
    // Unreferenced: the pending calls themselves keep the loop alive.
    q.timer = setTimeout(() => this.fire(timeout, q), Math.ceil(delay));
    q.timer.unref();
  }

  private fire(timeout: number, q: Queue): void {
    q.timer = undefined;
    const now = performance.now();
    while (q.head < q.ids.length) {
      const id = q.ids[q.head];
      const pending = this.pending.has(id);
      if (pending && q.at[q.head] > now) {
        this.arm(timeout, q);
        return;
      }
      q.head++;
      if (pending) this.expired(id, timeout);
    }
    if (this.queues.get(timeout) === q) this.queues.delete(timeout);
  }
}
