/**
 * Counts turns of the event loop (one setImmediate per check phase) until stopped: how a test sees
 * that work was spread over turns rather than done in one synchronous step.
 */
export interface LoopTurns {
  /** Turns seen so far. */
  readonly count: number;
  stop(): void;
}

export function countLoopTurns(): LoopTurns {
  let count = 0;
  let ticking = true;
  const tick = (): void => {
    count++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get count() {
      return count;
    },
    stop: () => {
      ticking = false;
    },
  };
}
