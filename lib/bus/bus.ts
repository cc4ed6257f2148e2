/**
 * The bus: events, services and shared data between plugins, always through the host. Plugins never
 * talk to each other directly: each message arrives on the sender's own channel, so the sender is
 * the plugin that channel belongs to (its record's name, fixed when it was prepared), never a name
 * found in the message. Every message is checked against the sender's grants (grants.ts) before
 * anything else happens; a refusal is audited and answered with an error, and a plugin refused
 * again and again (maxRefusals within refusalWindowMs), or publishing past its rate for as long,
 * has its violation reported (kind 'flood').
 *
 * Memory: a payload is bounded (maxPayloadBytes), and so are a service call's arguments and its
 * answer; a publisher's rate too; deliveries waiting on one subscriber are bounded in number
 * (maxPendingPerSubscriber) and, with the service calls waiting on it, in bytes
 * (maxPendingBytesPerPlugin, under the channel's own bound on what a plugin leaves unread, past
 * which that plugin would be unloaded as a flood). Past them, events for that subscriber are
 * dropped and counted (`dropped`), not queued, and calls are refused (ERR_BUS_LIMIT). A slow subscriber is not hostile (it may just be
 * busy), so it loses events rather than its sandbox; the publisher, which is bounded by its rate,
 * is not slowed by it either.
 */
import type { CancelSource } from '../abort-source';
import { WardenError } from '../errors';
import { DEFAULT_BUS } from '../defaults';
import { TokenBucket } from '../token-bucket';
import { BUS_NAME_RE, BusRights, busCovers, parseDataKey } from './grants';
import { DataStore, type DataAdapter } from './data';
import { sizeOver } from './size';

/** The application's name on the bus: not a plugin name (those cannot start with '$'), so no plugin can take it. */
export const HOST_SENDER = '$host';

/** How the bus reaches one running instance of a plugin (plugins/bus-wiring.ts makes it). */
export interface BusPeer {
  /** Delivers an event; settles when the subscriber's handler did. */
  deliver(topic: string, from: string, payload: unknown, timeout: number): Promise<unknown>;
  /** Runs one of the plugin's services for `caller`. */
  serve(caller: string, service: string, args: unknown[], options: { timeout: number; cancel?: CancelSource }): Promise<unknown>;
  /** The plugin abused the bus: its violation. */
  violation(message: string): void;
  /** False once the instance is retired (unloaded, replaced, broke a limit). */
  live(): boolean;
}

/** One instance of a plugin on the bus: its rights, what it subscribed to and provides. */
export class BusMember {
  readonly topics = new Set<string>();
  readonly services = new Set<string>();
  /** The running instance; undefined while the plugin loads (see connect()). */
  peer: BusPeer | undefined;
  /**
   * Set when it was refused too often: the violation's message. From then on its refusals are
   * neither audited nor counted (the plugin is being ended), so a flood costs the host no lines.
   */
  floodedWith: string | undefined;
  /** Deliveries waiting on this instance. */
  pending = 0;
  /** Bytes of deliveries and service calls waiting on it (as sizeOver counts them). */
  pendingBytes = 0;
  dropped = 0;
  private readonly publishes: TokenBucket;
  private readonly dataWrites: TokenBucket;
  private refusals: number[] = [];

  constructor(private granted: BusRights, private readonly o: BusSettings) {
    const now = Date.now();
    this.publishes = new TokenBucket(o.publishPerSecond, o.publishBurst, now);
    this.dataWrites = new TokenBucket(o.dataWriteBytesPerSecond, o.dataWriteBurstBytes, now);
  }

  /** What it may do now (narrowed when it is detached: see Bus.detach). */
  get rights(): BusRights {
    return this.granted;
  }

  get name(): string {
    return this.granted.plugin;
  }

  /** Keeps only the grants `to` also covers; none when `to` is undefined. Never widens. */
  narrowTo(to: BusRights | undefined): void {
    const keep = to === undefined ? [] : this.granted.grants.filter((g) => to.grants.some((t) => busCovers(t, g)));
    this.granted = new BusRights(this.granted.plugin, keep);
  }

  /** Takes one publish from its token bucket; false when over the rate. */
  takeToken(now = Date.now()): boolean {
    return this.publishes.tryTake(now);
  }

  /** Takes `bytes` of data writes (set, delete) from its token bucket; false when over the rate. */
  takeDataWrite(bytes: number, now = Date.now()): boolean {
    return this.dataWrites.tryTake(now, bytes);
  }

  /**
   * The instance is running: the bus may now reach it. A flood while it loaded (the bus answers from
   * the plugin's first line of code) is its violation now: the host fails the load with it.
   */
  connect(peer: BusPeer): void {
    this.peer = peer;
    if (this.floodedWith !== undefined) peer.violation(this.floodedWith);
  }

  /**
   * Counts a refusal; true when the plugin has now been refused too often (its violation). Keeps at
   * most maxRefusals + 1 times: a flood of refusals is a bounded list, not one entry each.
   */
  refused(now = Date.now()): boolean {
    this.refusals = this.refusals.filter((t) => now - t < this.o.refusalWindowMs);
    this.refusals.push(now);
    if (this.refusals.length > this.o.maxRefusals + 1) this.refusals.shift();
    return this.refusals.length > this.o.maxRefusals;
  }
}

export type BusSettings = typeof DEFAULT_BUS;
export type BusAudit = (severity: 'info' | 'notice' | 'warning' | 'critical', plugin: string | undefined, reason: string, details: Record<string, unknown>) => void;

export interface BusOptions extends Partial<BusSettings> {
  /** Persists shared data (default: memory only). */
  dataAdapter?: DataAdapter;
}

/** A refusal of the bus; `code` is ERR_BUS_DENIED (no grant), ERR_BUS_LIMIT (size, rate) or ERR_BUS_UNAVAILABLE. */
export class BusError extends WardenError {}

export type BusObserver = (topic: string, from: string, payload: unknown) => void;

export class Bus {
  readonly settings: BusSettings;
  readonly data: DataStore;
  private readonly members = new Map<string, BusMember>();
  private readonly observers = new Map<string, Set<BusObserver>>();

  constructor(options: BusOptions, private readonly audit: BusAudit) {
    const { dataAdapter, ...rest } = options;
    this.settings = { ...DEFAULT_BUS, ...rest };
    this.data = new DataStore(this.settings, dataAdapter);
  }

  member(rights: BusRights): BusMember {
    return new BusMember(rights, this.settings);
  }

  /** The instance now serving its plugin (a reload attaches the new one in the same step as it takes calls). */
  attach(m: BusMember): void {
    this.members.set(m.name, m);
  }

  /** The member now serving `plugin`, if any. */
  memberOf(plugin: string): BusMember | undefined {
    return this.members.get(plugin);
  }

  /**
   * The instance stops serving; a newer one attached meanwhile stays. What it may still do while it
   * drains narrows at once to what `successor` is granted, nothing without one: a reload that narrows
   * the grants, an unload, a revocation take effect now, not when the old instance's last call ends;
   * an ordinary reload with the same grants loses none of the drain's work.
   */
  detach(m: BusMember, successor?: BusMember): void {
    if (this.members.get(m.name) === m) this.members.delete(m.name);
    m.narrowTo(successor?.rights);
  }

  /**
   * Audits a refusal, throws it to the sender, and reports the sender's violation when it keeps
   * trying. Once it has been refused too often, its refusals are thrown only: its violation is
   * reported (or, while it loads, waits for connect()), and each further line would be its flood.
   * `counted` false: audited (details `counted: false`), never toward its violation: a refusal the
   * sender may not have caused (a service's answer made large by its caller's arguments).
   */
  private refuse(m: BusMember | undefined, code: string, reason: string, details: Record<string, unknown>, counted = true): never {
    if (m?.floodedWith !== undefined) throw new BusError(code, reason);
    this.audit('warning', m?.name, `bus: refused ${reason}`, { code, ...details, ...(counted ? {} : { counted: false }) });
    if (counted && m !== undefined && m.refused()) {
      m.floodedWith = `refused on the bus more than ${this.settings.maxRefusals} times within ${this.settings.refusalWindowMs} ms (last: ${reason})`;
      m.peer?.violation(m.floodedWith);
    }
    throw new BusError(code, reason);
  }

  private checkName(m: BusMember | undefined, what: string, v: unknown): string {
    if (typeof v !== 'string' || !BUS_NAME_RE.test(v)) this.refuse(m, 'ERR_BUS_INVALID', `a ${what} that is not a name matching ${BUS_NAME_RE}`, { [what]: String(v).slice(0, 100) });
    return v;
  }

  subscribe(m: BusMember, topic: unknown): void {
    const t = this.checkName(m, 'topic', topic);
    if (!m.rights.maySubscribe(t)) this.refuse(m, 'ERR_BUS_DENIED', `subscribe to '${t}': not granted (events:subscribe:${t})`, { topic: t, grant: `events:subscribe:${t}` });
    m.topics.add(t);
  }

  provide(m: BusMember, service: unknown): void {
    const s = this.checkName(m, 'service', service);
    if (!m.rights.mayProvide(s)) this.refuse(m, 'ERR_BUS_DENIED', `provide '${s}': not granted (service:provide:${s})`, { service: s, grant: `service:provide:${s}` });
    m.services.add(s);
  }

  /** The application observes a topic (every event on it, whoever sent it). Returns the unsubscribe. */
  observe(topic: string, fn: BusObserver): () => void {
    if (!BUS_NAME_RE.test(topic)) throw new BusError('ERR_BUS_INVALID', `topic '${topic}' must match ${BUS_NAME_RE}`);
    const set = this.observers.get(topic) ?? new Set();
    set.add(fn);
    this.observers.set(topic, set);
    return () => set.delete(fn);
  }

  /**
   * Publishes from `sender` (a member, or undefined for the application, which is HOST_SENDER and
   * needs no grant). Returns how many subscribers the event was handed to (dropped ones not counted).
   */
  publish(sender: BusMember | undefined, topic: unknown, payload: unknown): number {
    const t = this.checkName(sender, 'topic', topic);
    const from = sender?.name ?? HOST_SENDER;
    if (sender !== undefined) {
      if (!sender.rights.mayPublish(t)) this.refuse(sender, 'ERR_BUS_DENIED', `publish to '${t}': not granted (events:publish:${t})`, { topic: t, grant: `events:publish:${t}` });
      if (!sender.takeToken()) this.refuse(sender, 'ERR_BUS_LIMIT', `publish to '${t}': over the rate of ${this.settings.publishPerSecond}/s (burst ${this.settings.publishBurst})`, { topic: t, limit: this.settings.publishPerSecond });
    }
    const size = sizeOver(payload, this.settings.maxPayloadBytes);
    if (size > this.settings.maxPayloadBytes) this.refuse(sender, 'ERR_BUS_LIMIT', `publish to '${t}': payload over ${this.settings.maxPayloadBytes} bytes`, { topic: t, limit: this.settings.maxPayloadBytes });
    let n = 0;
    for (const m of this.members.values()) {
      if (!m.topics.has(t) || m.peer === undefined || !m.peer.live() || m === sender) continue;
      // Checked again at delivery: the subscription was checked when made, the rights are the instance's own.
      if (!m.rights.maySubscribe(t)) continue;
      if (m.pending >= this.settings.maxPendingPerSubscriber || m.pendingBytes + size > this.settings.maxPendingBytesPerPlugin) {
        if (m.dropped++ === 0 || m.dropped % 1000 === 0) this.audit('notice', m.name, `bus: dropping events for a slow subscriber (${m.dropped} so far)`, { topic: t, pending: m.pending });
        continue;
      }
      m.pending++;
      m.pendingBytes += size;
      n++;
      m.peer.deliver(t, from, payload, this.settings.callTimeoutMs).catch(() => undefined).finally(() => {
        m.pending--;
        m.pendingBytes -= size;
      });
    }
    for (const fn of this.observers.get(t) ?? []) {
      try {
        fn(t, from, payload);
      } catch {
        // The application's own observer: its failure is not the publisher's.
      }
    }
    return n;
  }

  /** Calls `plugin`'s `service` for `caller` (undefined: the application). Callee errors come back as they were thrown. */
  async call(caller: BusMember | undefined, plugin: unknown, service: unknown, args: unknown, cancel?: CancelSource): Promise<unknown> {
    const s = this.checkName(caller, 'service', service);
    if (typeof plugin !== 'string' || plugin.length > 214) this.refuse(caller, 'ERR_BUS_INVALID', 'a service call whose plugin is not a name', {});
    if (!Array.isArray(args)) this.refuse(caller, 'ERR_BUS_INVALID', 'a service call whose arguments are not a list', {});
    if (caller !== undefined && !caller.rights.mayCall(plugin, s)) {
      this.refuse(caller, 'ERR_BUS_DENIED', `call ${plugin}/${s}: not granted (service:call:${plugin}/${s})`, { target: plugin, service: s, grant: `service:call:${plugin}/${s}` });
    }
    const target = this.members.get(plugin);
    if (target === undefined || target.peer === undefined || !target.peer.live()) throw new BusError('ERR_BUS_UNAVAILABLE', `call ${plugin}/${s}: ${plugin} is not running`);
    if (!target.services.has(s)) throw new BusError('ERR_BUS_UNAVAILABLE', `call ${plugin}/${s}: ${plugin} provides no service '${s}'`);
    const max = this.settings.maxPayloadBytes;
    const size = sizeOver(args, max);
    if (size > max) this.refuse(caller, 'ERR_BUS_LIMIT', `call ${plugin}/${s}: arguments over ${max} bytes`, { target: plugin, service: s, limit: max });
    // A callee that reads nothing (busy) must not have the host queue calls for it without end: it
    // would be unloaded as a flood, for what its callers sent. Not the caller's violation either.
    if (target.pendingBytes + size > this.settings.maxPendingBytesPerPlugin) {
      throw new BusError('ERR_BUS_LIMIT', `call ${plugin}/${s}: ${plugin} has over ${this.settings.maxPendingBytesPerPlugin} bytes of calls and events waiting; try again later`);
    }
    target.pendingBytes += size;
    let answer: unknown;
    try {
      answer = await target.peer.serve(caller?.name ?? HOST_SENDER, s, args as unknown[], { timeout: this.settings.callTimeoutMs, cancel });
    } finally {
      target.pendingBytes -= size;
    }
    // The answer goes on to the caller's channel: bounded like a payload. Refused and audited under
    // the callee's name, but not counted toward its refusals: an honest answer may be large for what
    // the caller sent (an echo of arguments just under the bound), and a caller must not be able to
    // get a plugin it calls unloaded. What the callee wrote was charged on its own channel already.
    if (sizeOver(answer, max) > max) this.refuse(target, 'ERR_BUS_LIMIT', `call ${plugin}/${s}: the answer is over ${max} bytes`, { caller: caller?.name ?? HOST_SENDER, service: s, limit: max }, false);
    return answer;
  }

  /** One shared-data operation of `m` (undefined: the application, which may do anything). */
  dataOp(m: BusMember | undefined, op: 'get' | 'set' | 'delete' | 'list', key: unknown, value?: unknown): unknown {
    let parts: { owner: string; rest: string };
    try {
      if (op === 'list') {
        // A prefix may end in '/' ('OWNER/' is the whole namespace): checked as the key it starts.
        const open = typeof key === 'string' && key.endsWith('/');
        const p = parseDataKey(open ? `${key}x` : key, 'prefix');
        parts = { owner: p.owner, rest: open ? p.rest.slice(0, -1) : p.rest };
      } else parts = parseDataKey(key);
    } catch (e) {
      this.refuse(m, 'ERR_BUS_INVALID', `data ${op}: ${(e as Error).message}`, {});
    }
    const access = op === 'get' || op === 'list' ? 'read' : 'write';
    if (m !== undefined && !m.rights.mayData(access, parts.owner, parts.rest)) {
      this.refuse(m, 'ERR_BUS_DENIED', `data ${op} '${parts.owner}/${parts.rest}': not granted (data:${access}:${parts.owner}/...)`, { owner: parts.owner, key: parts.rest, grant: `data:${access}:${parts.owner}/${parts.rest}` });
    }
    // Charged what the write costs at most: the owner's namespace as it is, and the largest value.
    if (m !== undefined && access === 'write' && !m.takeDataWrite(Math.max(1024, this.data.usage(parts.owner) + (op === 'set' ? this.settings.maxValueBytes : 0)))) {
      this.refuse(m, 'ERR_BUS_LIMIT', `data ${op} '${parts.owner}/${parts.rest}': over the rate of ${this.settings.dataWriteBytesPerSecond} bytes of '${parts.owner}' rewritten per second`, { owner: parts.owner, key: parts.rest, limit: this.settings.dataWriteBytesPerSecond });
    }
    if (op === 'get') return this.data.get(parts.owner, parts.rest);
    if (op === 'delete') return this.data.delete(parts.owner, parts.rest);
    if (op === 'list') return this.data.list(parts.owner, parts.rest).map((k) => `${parts.owner}/${k}`);
    try {
      this.data.set(parts.owner, parts.rest, value);
    } catch (e) {
      this.refuse(m, (e as { code?: string }).code ?? 'ERR_BUS_INVALID', `data set '${parts.owner}/${parts.rest}': ${(e as Error).message}`, { owner: parts.owner, key: parts.rest });
    }
    return undefined;
  }
}
