/**
 * Cpu time budget without a fixed polling timer.
 *
 * The kernel has no "cpu usage reached N" notification for a cgroup (RLIMIT_CPU exists, but per
 * process: a sandbox of many processes or one that forks around it escapes it). But usage can only grow
 * so fast: at most `rate` cpu-seconds per wall second, where rate is the sandbox's cpu bandwidth limit
 * or the number of cpus it may run on. So after reading usage U against budget B, the budget cannot
 * be exhausted before (B − U) / rate from now. We arm one timer for that moment, read again, and
 * re-arm. A sandbox running flat out is read about once, when its budget runs out; one using a
 * fraction f of `rate` is read about log(budget) / log(1/(1-f)) times (each read waits for the remaining
 * budget at full speed); an idle one hardly ever. Near the end reads are at least MIN_REARM_MS apart,
 * which bounds the overshoot to
 * rate × MIN_REARM_MS of cpu. The launcher may also set RLIMIT_CPU per process as a backstop.
 */
import * as os from 'node:os';

export const MIN_REARM_MS = 5;

export class CpuTimeWatch {
  private timer: NodeJS.Timeout | undefined;
  private readonly rate: number;
  private stopped = false;
  /** Reads performed, for tests and the benchmark. */
  checks = 0;

  /**
   * @param budgetNs cpu time allowed, in ns
   * @param usageNs  reads the cgroup's cumulative cpu usage in ns (undefined once the cgroup is gone)
   * @param cores    the cpu bandwidth limit, if any
   * @param onExhausted called once with the usage observed
   */
  constructor(
    private readonly budgetNs: number,
    private readonly usageNs: () => number | undefined,
    cores: number | undefined,
    private readonly onExhausted: (usedNs: number) => void,
  ) {
    const cpus = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
    this.rate = Math.max(0.01, Math.min(cores ?? cpus, cpus));
  }

  start(): void {
    this.check();
  }

  private check(): void {
    this.timer = undefined;
    if (this.stopped) return;
    this.checks++;
    const used = this.usageNs();
    if (used === undefined) return;
    if (used >= this.budgetNs) {
      this.stopped = true;
      this.onExhausted(used);
      return;
    }
    const earliestMs = (this.budgetNs - used) / this.rate / 1e6;
    this.timer = setTimeout(() => this.check(), Math.max(MIN_REARM_MS, Math.ceil(earliestMs)));
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
