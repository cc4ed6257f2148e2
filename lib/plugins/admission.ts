/**
 * Admission for plugin starts: at most `max` spawns + handshakes run at once, the others wait in
 * line (first come, first served). A thousand cold starts at once each get 1/1000th of the cores
 * and time out under their own load; a bounded number each get a fair share and finish.
 *
 * What runs inside a slot is only the start itself (sandbox, runner, module, activate(), hook
 * list): a plugin's dependencies are loaded during its preparation, before it asks for a slot, so
 * a plugin never holds a slot while it waits for another plugin's load. The load timeout is armed
 * by the start, so the time spent in line does not count against it.
 */
import { PluginStateError } from './errors';

interface Waiter {
  plugin: string;
  resolve(): void;
  reject(e: Error): void;
}

export class Admission {
  private running = 0;
  private readonly line: Waiter[] = [];
  private closed = false;

  constructor(readonly max: number) {}

  /** Starts waiting to run (not yet running). */
  get queued(): number {
    return this.line.length;
  }

  /** Runs `fn` once a slot is free; the slot is given back however `fn` ends. */
  async run<T>(plugin: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw closedError(plugin);
    if (this.running >= this.max) {
      await new Promise<void>((resolve, reject) => this.line.push({ plugin, resolve, reject }));
    } else {
      this.running++;
    }
    try {
      return await fn();
    } finally {
      this.release();
    }
  }

  /** Refuses every start still in line (they reject, nothing of theirs was spawned) and all later ones. */
  close(): void {
    this.closed = true;
    for (const w of this.line.splice(0)) w.reject(closedError(w.plugin));
  }

  private release(): void {
    // The slot passes straight to the next in line, so `running` counts it without a gap.
    const next = this.line.shift();
    if (next !== undefined) next.resolve();
    else this.running--;
  }
}

function closedError(plugin: string): PluginStateError {
  return new PluginStateError(plugin, 'the host closed while the plugin waited for its turn to start');
}
