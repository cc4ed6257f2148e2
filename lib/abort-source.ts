/**
 * Something that can be aborted once, heard the cheap way (`aborted`, `onAbort`) or the standard
 * way (`signal`). Both a handler's context of a peer's call (channel/call-context.ts) and a hook
 * handler's context (hooks/invoke.ts) are one.
 *
 * Why not an AbortController per call: it and its listener cost several microseconds, paid on every
 * call of a parallel hook over hundreds of plugins although almost none is ever cancelled. The
 * controller is made only when someone reads `signal`.
 */

/** What cancels work done on behalf of something else (a plugin call made for a hook handler). */
export interface CancelSource {
  readonly aborted: boolean;
  /** Calls `fn` once when aborted (at once if it already is); returns the function that forgets it. */
  onAbort(fn: () => void): () => void;
}

const NOTHING_TO_FORGET = (): void => undefined;

export class AbortSource implements CancelSource {
  private ac: AbortController | undefined = undefined;
  private isAborted = false;
  private reason: unknown = undefined;
  private listeners: Array<() => void> | undefined = undefined;

  get signal(): AbortSignal {
    if (this.ac === undefined) {
      this.ac = new AbortController();
      if (this.isAborted) this.ac.abort(this.reason);
    }
    return this.ac.signal;
  }

  get aborted(): boolean {
    return this.isAborted;
  }

  onAbort(fn: () => void): () => void {
    if (this.isAborted) {
      fn();
      return NOTHING_TO_FORGET;
    }
    const list = (this.listeners ??= []);
    list.push(fn);
    return () => {
      const i = list.indexOf(fn);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /**
   * Aborts once; later calls do nothing. A listener that throws stops no other listener and does not
   * reach the caller: the listeners belong to the handler, the abort to whoever runs it.
   */
  abort(reason: unknown): void {
    if (this.isAborted) return;
    this.isAborted = true;
    this.reason = reason;
    if (this.ac !== undefined) {
      try {
        this.ac.abort(reason);
      } catch {
        // A listener of the signal threw: see above.
      }
    }
    const list = this.listeners;
    this.listeners = undefined;
    if (list === undefined) return;
    for (const fn of list) {
      try {
        fn();
      } catch {
        // As above.
      }
    }
  }
}
