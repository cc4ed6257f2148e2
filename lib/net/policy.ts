/**
 * The network policy of one sandbox: decides each connect and listen the seccomp listener hands to
 * the host (native/net_intercept.cc), answers the sandbox's DNS stub, counts, and reports.
 *
 * Rules that hold whatever is granted:
 * - a name is resolved by the host, and only addresses that pass the rules below are answered; a
 *   connect by name is allowed only to an address the host itself answered for a granted name, so
 *   a DNS answer that changes between lookups (rebinding) gains nothing;
 * - loopback, private (RFC 1918), CGNAT, link-local and metadata, unique-local, multicast,
 *   unspecified and reserved addresses, in every form (IPv4-mapped, NAT64, 6to4), are refused unless
 *   an explicit IP or CIDR grant covers them; a name grant never opens them;
 * - the host's own addresses (any interface) are closed like loopback: they lead to its services;
 * - the sandbox's own loopback is its own (connects there stay inside its network namespace);
 * - TCP only: UDP reaches the DNS stub and the sandbox's own loopback, nothing else; raw and
 *   packet sockets never leave the sandbox.
 */
import * as dns from 'node:dns';
import * as os from 'node:os';
import { InvalidOptionError } from '../errors';
import { TokenBucket } from '../token-bucket';
import { classify, embeddedIpv4, parseIp, type AddressClass, type Ip } from './address';
import { buildAnswer, formErr, parseQuery, RCODE_NXDOMAIN, RCODE_REFUSED, TYPE_A, TYPE_AAAA } from './dns';
import { ipCovered, nameCovered, parseGrant, portCovered, type NetGrant } from './grants';

export interface NetworkOptions {
  /** Destinations: `HOST[:PORT]` (names, `*.example.com`, IPs, CIDRs; ports or ranges). */
  allow?: readonly string[];
  /** Any public destination (what `net:outbound` grants), under the same rules. Default false. */
  outbound?: boolean;
  /** Connections open at once (TCP, leaving the sandbox). Default 64. */
  maxConnections?: number;
  /** New connections per minute. Default 10 (the elizaOS plugin default). */
  connectionsPerMinute?: number;
  /** Refused attempts per minute before the sandbox is killed for a violation. Default 30. */
  maxRefusalsPerMinute?: number;
  /** DNS servers the host asks for the sandbox (IPs); default: Node's (dns.getServers(), from /etc/resolv.conf or dns.setServers). */
  dnsServers?: readonly string[];
}

export interface NetworkEvent {
  /** Milliseconds since the epoch. */
  at: number;
  type: 'connect' | 'dns' | 'listen' | 'connected' | 'closed';
  decision?: 'allowed' | 'refused';
  /** Why refused, or which grant allowed. */
  reason?: string;
  address?: string;
  port?: number;
  name?: string;
  /** The errno the program saw (refused, or the host's connect failed). */
  errno?: string;
  /** At 'closed': bytes the sandbox sent and received on the connection (null when unknown). */
  bytesOut?: number | null;
  bytesIn?: number | null;
  /** At an allowed 'dns': answers of names not reported before it (over the rate of reports). */
  unreported?: number;
}

export interface ConnectRequest {
  syscall: 'connect' | 'listen';
  domain: 'inet' | 'inet6' | 'unix' | 'other';
  family?: 'inet' | 'inet6' | 'unspec' | 'other';
  address?: string;
  port?: number;
  type: 'stream' | 'dgram' | 'raw' | 'seqpacket' | 'other';
  hostSocket: boolean;
  pid: number;
  /** Connects the host made under the last lease whose outcome (`connected`) has not come yet. */
  inFlight?: number;
}

/**
 * `lease`: with 'host', how many more connects the host may make to exactly this address and port
 * (and to others leased before, within LEASE_MS) without asking, each reported by `connected`.
 */
export interface Verdict { verdict: 'host' | 'local' | 'refuse'; errno?: number; id?: number; lease?: number }

const EACCES = 13;
const EAGAIN = 11;
const ERRNO_NAME: Record<number, string> = { 1: 'EPERM', 11: 'EAGAIN', 13: 'EACCES', 101: 'ENETUNREACH', 110: 'ETIMEDOUT', 111: 'ECONNREFUSED', 113: 'EHOSTUNREACH', 97: 'EAFNOSUPPORT' };
const errnoName = (n: number) => ERRNO_NAME[n] ?? `errno ${n}`;

function positiveInt(v: unknown, field: string, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 1_000_000) throw new InvalidOptionError(field, 'must be a whole number from 1 to 1000000');
  return v;
}

export interface ResolvedNetworkOptions {
  grants: NetGrant[];
  outbound: boolean;
  maxConnections: number;
  connectionsPerMinute: number;
  maxRefusalsPerMinute: number;
  dnsServers: string[] | null;
}

/** Validates `network` options; throws InvalidOptionError naming the field. */
export function validateNetworkOptions(o: unknown, field = 'network'): ResolvedNetworkOptions {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new InvalidOptionError(field, 'must be an object { allow?, outbound?, maxConnections?, connectionsPerMinute? }');
  const v = o as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (!['allow', 'outbound', 'maxConnections', 'connectionsPerMinute', 'maxRefusalsPerMinute', 'dnsServers'].includes(k)) throw new InvalidOptionError(`${field}.${k}`, 'is not a network option (typo?)');
  }
  if (v.allow !== undefined && !Array.isArray(v.allow)) throw new InvalidOptionError(`${field}.allow`, "must be an array of 'HOST[:PORT]' strings");
  const grants = ((v.allow ?? []) as unknown[]).map((g, i) => {
    try {
      return parseGrant(g as string);
    } catch (e) {
      throw new InvalidOptionError(`${field}.allow[${i}]`, (e as Error).message);
    }
  });
  if (v.outbound !== undefined && typeof v.outbound !== 'boolean') throw new InvalidOptionError(`${field}.outbound`, 'must be true or false');
  let dnsServers: string[] | null = null;
  if (v.dnsServers !== undefined) {
    if (!Array.isArray(v.dnsServers) || v.dnsServers.length === 0) throw new InvalidOptionError(`${field}.dnsServers`, 'must be a non-empty array of IP addresses');
    dnsServers = (v.dnsServers as unknown[]).map((s, i) => {
      if (typeof s !== 'string' || parseIp(s) === null) throw new InvalidOptionError(`${field}.dnsServers[${i}]`, 'must be an IP address');
      return s;
    });
  }
  return {
    grants,
    outbound: v.outbound === true,
    maxConnections: positiveInt(v.maxConnections, `${field}.maxConnections`, 64),
    connectionsPerMinute: positiveInt(v.connectionsPerMinute, `${field}.connectionsPerMinute`, 10),
    maxRefusalsPerMinute: positiveInt(v.maxRefusalsPerMinute, `${field}.maxRefusalsPerMinute`, 30),
    dnsServers,
  };
}

interface Answered { name: string; grants: NetGrant[] }
interface Conn {
  address: string;
  port: number;
  cookie?: number;
  sent?: number;
  received?: number;
  /** Sweeps since the sandbox's side was seen closed, waiting for the kernel's final counts. */
  closing?: number;
  watched?: boolean;
}

/** The kernel's socket destroy notifications (lib/sandbox/network-closes.ts), or none. */
export interface CloseWatch {
  watch(cookie: number, onClose: (state: number, sent: number, received: number) => void): boolean;
  unwatch(cookie: number): void;
  drain(): void;
}
const NO_CLOSE_WATCH: CloseWatch = { watch: () => false, unwatch: () => {}, drain: () => {} };

const SWEEP_MS = 1000;
// TCP states in which the sandbox has not closed its side: SYN_SENT, SYN_RECV, ESTABLISHED, CLOSE_WAIT.
const OPEN_STATES = new Set([1, 2, 3, 8]);
// Sweeps a closed connection waits for its destroy notification before it is reported with the
// last sampled counts (a FIN_WAIT2 socket whose peer never closes lives on for tcp_fin_timeout).
const CLOSING_SWEEPS = 3;
const MAX_ANSWERED = 4096;
// Connects leased at once (native/net_fast.cc keeps a lease for 1 s): what can happen before JS hears.
const LEASE_MAX = 64;
const MAX_LEASED_REASONS = 256;
// A sandbox's DNS is bounded like its connects: each query it sends its stub is a lookup by the
// host, an event (an audit line), and, while the upstream is silent, a resolver socket until it
// times out. Over the rate or the lookups at once a query is answered REFUSED and counts as a
// refused attempt (maxRefusalsPerMinute then makes it a violation). Identical lookups in flight
// share one, answers are kept for their TTL (at most DNS_CACHE_MS), and an allowed name is reported
// once per DNS_REPORT_MS with how many queries it answered. Reports of allowed names, all names
// together, are a rate of their own (DNS_REPORTS_PER_MINUTE after a burst of DNS_REPORT_BURST): a
// plugin resolving new names under a wildcard grant (or with net:outbound) as fast as the query
// rate allows made 50 audit lines a second for as long as it liked. Names past it are counted,
// and the next report says how many.
const DNS_PER_SECOND = 50;
const DNS_BURST = 100;
const MAX_DNS_IN_FLIGHT = 16;
const DNS_CACHE_MS = 30_000;
const DNS_CACHE_MAX = 256;
const DNS_REPORT_MS = 10_000;
const DNS_REPORTED_MAX = 1024;
const DNS_REPORT_BURST = 30;
const DNS_REPORTS_PER_MINUTE = 30;

export class NetworkPolicy {
  private readonly answered = new Map<bigint, Answered>(); // addresses the stub answered, by value (v4 as v4)
  private readonly resolver: dns.promises.Resolver;
  private connectTimes: number[] = [];
  private refusalTimes: number[] = [];
  private nextId = 1;
  private readonly open = new Map<number, Conn>();
  private closing = 0; // entries of `open` whose sandbox side is closed (they no longer count)
  private sweepTimer: NodeJS.Timeout | undefined;
  private violated = false;
  /** Why each leased destination was allowed, for the events of the connects made under the lease. */
  private readonly leased = new Map<string, { reason: string; name?: string }>();
  private readonly dnsQueries = new TokenBucket(DNS_PER_SECOND, DNS_BURST, Date.now());
  private readonly dnsReports = new TokenBucket(DNS_REPORTS_PER_MINUTE / 60, DNS_REPORT_BURST, Date.now());
  /** Allowed names' reports held back by dnsReports since the last one made. */
  private dnsReportsHeld = 0;
  private readonly dnsInFlight = new Map<string, Promise<string[] | null>>();
  private readonly dnsCache = new Map<string, { addrs: string[]; until: number }>();
  private readonly dnsReported = new Map<string, { at: number; unreported: number }>();

  constructor(
    private readonly o: ResolvedNetworkOptions,
    private readonly emit: (e: NetworkEvent) => void,
    private readonly onViolation: (reason: string) => void,
    private readonly replyDns: (port: number, answer: Buffer) => void,
    private readonly tcpStates: (cookies: Float64Array) => Array<[number, number, number, number]> = () => [],
    private readonly closes: CloseWatch = NO_CLOSE_WATCH,
  ) {
    this.resolver = new dns.promises.Resolver({ timeout: 3000, tries: 2 });
    this.resolver.setServers(o.dnsServers ?? dns.getServers());
  }

  /** Connections the host handed in and has not seen closed. */
  get openConnections(): number {
    return this.open.size - this.closing;
  }

  /** Called by native/net_intercept.cc for each connect and listen not made under a lease (native/net_fast.cc). Synchronous. */
  decide(r: ConnectRequest): Verdict {
    if (r.syscall === 'listen') {
      if (r.hostSocket) return this.refuse({ type: 'listen', reason: 'a connected socket cannot listen' });
      return { verdict: 'local' }; // its own socket in its own namespace: reachable from inside only
    }
    if (r.family === 'unspec') {
      if (r.hostSocket) return this.refuse({ type: 'connect', reason: 'disconnecting a host-connected socket' });
      return { verdict: 'local' };
    }
    const parsed = r.address === undefined ? null : parseIp(r.address);
    if (parsed === null || (r.family !== 'inet' && r.family !== 'inet6')) return this.refuse({ type: 'connect', reason: `address family ${r.family}` });
    const ip = embeddedIpv4(parsed) ?? parsed;
    const port = r.port ?? 0;
    const cls = classify(ip);
    const where = { address: ip.text, port };
    // The sandbox's own loopback: its own network namespace, never the host's.
    if (cls === 'loopback') return { verdict: 'local' };
    // A UDP connect to port 0 sends nothing: glibc's getaddrinfo does it to sort the answers. It
    // runs on the sandbox's own socket, in its own namespace, where no route leads anywhere.
    if (r.type === 'dgram' && port === 0 && !r.hostSocket) return { verdict: 'local' };
    if (r.type === 'dgram') return this.refuse({ type: 'connect', ...where, reason: 'UDP leaves the sandbox only as DNS, through its stub' });
    if (r.type !== 'stream') return this.refuse({ type: 'connect', ...where, reason: `${r.type} sockets never leave the sandbox` });
    if (port === 0) return this.refuse({ type: 'connect', ...where, reason: 'port 0' });
    const grant = this.grantFor(ip, port, cls);
    if (typeof grant !== 'string' || grant.startsWith('refused:')) {
      return this.refuse({ type: 'connect', ...where, reason: typeof grant === 'string' ? grant.slice(9) : 'not granted' });
    }
    const now = Date.now();
    while (this.connectTimes.length > 0 && this.connectTimes[0]! <= now - 60_000) this.connectTimes.shift();
    // Connects made under a lease and not reported yet count as made and open.
    const inFlight = r.inFlight ?? 0;
    if (this.connectTimes.length + inFlight >= this.o.connectionsPerMinute) {
      return this.refuse({ type: 'connect', ...where, reason: `more than ${this.o.connectionsPerMinute} connections a minute` }, EAGAIN);
    }
    if (this.openConnections + inFlight >= this.o.maxConnections) {
      return this.refuse({ type: 'connect', ...where, reason: `more than ${this.o.maxConnections} connections open at once` }, EAGAIN);
    }
    this.connectTimes.push(now);
    const id = this.nextId++;
    this.open.set(id, where);
    const name = this.answered.get(ip.value)?.name;
    this.emit({ at: now, type: 'connect', decision: 'allowed', ...where, reason: grant, name });
    // What the host may do without asking, within the same limits (this connect counted).
    const lease = Math.min(LEASE_MAX, this.o.connectionsPerMinute - this.connectTimes.length - inFlight, this.o.maxConnections - this.openConnections - inFlight);
    if (lease > 0) {
      if (this.leased.size >= MAX_LEASED_REASONS) this.leased.clear();
      this.leased.set(`${r.address}|${port}`, { reason: grant, name });
    }
    return lease > 0 ? { verdict: 'host', id, lease } : { verdict: 'host', id };
  }

  /**
   * A connect the host made under a lease, to `address` (as the program gave it) and `port`: counted
   * and reported as if decided here, then as `report` would (errno 0: handed in, `cookie` its socket's).
   */
  connected(address: string, port: number, errno: number, cookie: number, at: number): void {
    const parsed = parseIp(address);
    const ip = parsed === null ? null : embeddedIpv4(parsed) ?? parsed;
    const where = { address: ip?.text ?? address, port };
    const why = this.leased.get(`${address}|${port}`);
    this.connectTimes.push(Date.now());
    const id = this.nextId++;
    this.open.set(id, where);
    this.emit({ at, type: 'connect', decision: 'allowed', ...where, reason: why?.reason ?? 'leased', name: why?.name });
    this.report(id, errno, cookie);
  }

  /** What grants ip:port: the grant's text, or 'refused: why'. */
  private grantFor(ip: Ip, port: number, cls: AddressClass): string {
    const explicit = this.o.grants.find((g) => ipCovered(g, ip, port));
    if (explicit !== undefined) return explicit.text;
    if (cls !== null) return `refused: ${cls} address (only an IP or CIDR grant opens it)`;
    if (hostAddresses().has(ip.value)) return 'refused: an address of this host (only an IP or CIDR grant opens it)';
    const a = this.answered.get(ip.value);
    const byName = a?.grants.find((g) => portCovered(g.ports, port));
    if (byName !== undefined) return `${byName.text} (${a!.name})`;
    if (this.o.outbound) return 'outbound';
    if (a !== undefined) return `refused: port ${port} is not granted for ${a.name}`;
    return 'refused: not granted';
  }

  /** A 'host' connection was handed in (errno 0; `cookie` is its socket's SO_COOKIE) or failed. */
  report(id: number, errno: number, cookie: number): void {
    const c = this.open.get(id);
    if (c === undefined) return;
    if (errno !== 0) this.open.delete(id);
    else {
      c.cookie = cookie;
      c.watched = this.closes.watch(cookie, (_state, sent, received) => this.close(id, c, sent, received));
    }
    this.emit({ at: Date.now(), type: 'connected', address: c.address, port: c.port, ...(errno === 0 ? {} : { errno: errnoName(errno) }) });
    if (errno === 0 && this.sweepTimer === undefined) {
      this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
      this.sweepTimer.unref();
    }
  }

  /** Reports a connection closed, with its final counts when known (>= 0). */
  private close(id: number, c: Conn, sent: number, received: number): void {
    if (this.open.get(id) !== c) return;
    if (sent >= 0) {
      c.sent = sent;
      c.received = received;
    }
    this.open.delete(id);
    if (c.closing !== undefined) this.closing--;
    if (c.watched === true) this.closes.unwatch(c.cookie!);
    this.emit({ at: Date.now(), type: 'closed', address: c.address, port: c.port, bytesOut: c.sent ?? null, bytesIn: c.received ?? null });
    if (this.open.size === 0 && this.sweepTimer !== undefined) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = undefined;
    }
  }

  /**
   * Which handed-in connections are still open, from the kernel's socket table (the host holds no
   * reference to them). A connection is closed once the sandbox's side has closed or shut it
   * (FIN_WAIT, TIME_WAIT, LAST_ACK, ...) or it is gone: from then on it no longer counts against
   * the limits, and it is reported when the kernel frees its socket, with the final byte counts
   * (lib/sandbox/network-closes.ts), or, without that notification, after a few sweeps with the last counts seen.
   */
  sweep(final = false): void {
    this.closes.drain(); // the kernel's final counts first: they close connections for good
    const live = [...this.open.entries()].filter(([, c]) => c.cookie !== undefined);
    let rows: Array<[number, number, number, number]> = [];
    try {
      rows = final ? [] : this.tcpStates(Float64Array.from(live.map(([, c]) => c.cookie!)));
    } catch {
      return; // no socket diagnostics: counts stay as they are
    }
    const byCookie = new Map(rows.map((r) => [r[0], r]));
    for (const [id, c] of live) {
      const row = byCookie.get(c.cookie!);
      if (row !== undefined && row[2] >= 0) {
        c.sent = row[2];
        c.received = row[3];
      }
      if (row !== undefined && OPEN_STATES.has(row[1])) continue;
      if (c.closing === undefined) {
        c.closing = 0;
        this.closing++;
      }
      if (!final && c.watched === true && c.closing++ < CLOSING_SWEEPS) continue;
      this.close(id, c, -1, -1);
    }
  }

  /** The sandbox exited: a last look (the kernel's notifications, then the counts), then every connection is closed. */
  stop(): void {
    this.sweep();
    this.sweep(true);
    if (this.sweepTimer !== undefined) clearInterval(this.sweepTimer);
    this.sweepTimer = undefined;
  }

  private refuse(e: Omit<NetworkEvent, 'at' | 'decision'>, errno = EACCES): Verdict {
    const now = Date.now();
    this.emit({ at: now, decision: 'refused', errno: errnoName(errno), ...e });
    this.refusalTimes = this.refusalTimes.filter((t) => t > now - 60_000);
    this.refusalTimes.push(now);
    if (!this.violated && this.refusalTimes.length > this.o.maxRefusalsPerMinute) {
      this.violated = true;
      this.onViolation(`more than ${this.o.maxRefusalsPerMinute} refused network attempts a minute`);
    }
    return { verdict: 'refuse', errno };
  }

  /** A query reached the stub from the sandbox's `port`. */
  dns(query: Buffer, port: number): void {
    if (this.violated) return; // being killed: nothing more is looked up or reported
    const q = parseQuery(query);
    if (q === null) {
      const e = formErr(query);
      if (e !== null) this.replyDns(port, e);
      return;
    }
    const now = Date.now();
    if (!this.dnsQueries.tryTake(now)) {
      this.refuse({ type: 'dns', name: q.name, reason: `more than ${DNS_PER_SECOND} DNS queries a second` });
      this.replyDns(port, buildAnswer(q, RCODE_REFUSED));
      return;
    }
    const grants = this.o.grants.filter((g) => nameCovered(g, q.name));
    const allowedName = grants.length > 0 || (this.o.outbound && parseIp(q.name) === null);
    if (!allowedName) {
      this.refuse({ type: 'dns', name: q.name, reason: 'name not granted' }, EACCES);
      this.replyDns(port, buildAnswer(q, RCODE_NXDOMAIN));
      return;
    }
    if (q.type !== TYPE_A && q.type !== TYPE_AAAA) {
      this.replyDns(port, buildAnswer(q, 0)); // NODATA: only addresses are answered
      return;
    }
    const key = `${q.type} ${q.name.toLowerCase()}`;
    const cached = this.dnsCache.get(key);
    let lookup: Promise<string[] | null> | undefined;
    if (cached !== undefined && cached.until > now) lookup = Promise.resolve(cached.addrs);
    else lookup = this.dnsInFlight.get(key);
    if (lookup === undefined) {
      if (this.dnsInFlight.size >= MAX_DNS_IN_FLIGHT) {
        this.refuse({ type: 'dns', name: q.name, reason: `more than ${MAX_DNS_IN_FLIGHT} DNS lookups at once` });
        this.replyDns(port, buildAnswer(q, RCODE_REFUSED));
        return;
      }
      lookup = this.lookUp(key, q.type, q.name);
    }
    lookup.then((addrs) => {
      if (this.violated) return;
      if (addrs === null) {
        this.replyDns(port, buildAnswer(q, 2)); // SERVFAIL: the host's resolver failed
        return;
      }
      const kept: Buffer[] = [];
      for (const text of addrs) {
        const ip = parseIp(text);
        if (ip === null) continue;
        const inner = embeddedIpv4(ip) ?? ip;
        const cls = classify(inner);
        // A name never opens a closed address; an explicit IP/CIDR grant may. An answer that tries
        // to is a refused attempt like any other (a name the sandbox can point anywhere).
        if (cls !== null && !this.o.grants.some((g) => g.kind === 'cidr' && ipCovered(g, inner, g.ports?.from ?? 1))) {
          this.refuse({ type: 'dns', name: q.name, address: inner.text, reason: `${cls} address in the answer, dropped` });
          continue;
        }
        this.remember(inner.value, { name: q.name, grants: grants.length > 0 ? grants : [] });
        kept.push(ipBytes(ip));
      }
      if (kept.length > 0) this.reportAllowed(q.name, addrs);
      this.replyDns(port, buildAnswer(q, 0, kept.slice(0, 16)));
    }).catch(() => {});
  }

  /** One host lookup for `key`, shared by the queries that ask while it runs; its answer kept for its TTL. */
  private lookUp(key: string, type: number, name: string): Promise<string[] | null> {
    const resolved = type === TYPE_A ? this.resolver.resolve4(name, { ttl: true }) : this.resolver.resolve6(name, { ttl: true });
    const lookup = resolved.then(
      (records) => {
        const ttl = Math.min(DNS_CACHE_MS / 1000, ...records.map((r) => r.ttl));
        const addrs = records.map((r) => r.address);
        if (ttl > 0) {
          this.dnsCache.delete(key);
          this.dnsCache.set(key, { addrs, until: Date.now() + ttl * 1000 });
          if (this.dnsCache.size > DNS_CACHE_MAX) this.dnsCache.delete(this.dnsCache.keys().next().value!);
        }
        return addrs;
      },
      (err: NodeJS.ErrnoException) => (err.code === 'ENODATA' || err.code === 'ENOTFOUND' ? [] : null),
    ).finally(() => this.dnsInFlight.delete(key));
    this.dnsInFlight.set(key, lookup);
    return lookup;
  }

  /** An allowed name's event: the first answer, then at most one per DNS_REPORT_MS, with the count of those in between. */
  private reportAllowed(name: string, addrs: readonly string[]): void {
    const now = Date.now();
    const r = this.dnsReported.get(name);
    if (r !== undefined && now - r.at < DNS_REPORT_MS) {
      r.unreported++;
      return;
    }
    if (!this.dnsReports.tryTake(now)) {
      // Over the rate of reports: counted, told with the next one. A name seen again meanwhile
      // counts again (its answers stay unreported until a report of it is made).
      this.dnsReportsHeld++;
      return;
    }
    const since = r === undefined || r.unreported === 0 ? '' : ` (and ${r.unreported} more answers since the last report)`;
    const held = this.dnsReportsHeld;
    this.dnsReportsHeld = 0;
    this.dnsReported.delete(name);
    this.dnsReported.set(name, { at: now, unreported: 0 });
    if (this.dnsReported.size > DNS_REPORTED_MAX) this.dnsReported.delete(this.dnsReported.keys().next().value!);
    const e: NetworkEvent = { at: now, type: 'dns', decision: 'allowed', name, reason: addrs.join(' ') + since };
    if (held > 0) {
      e.unreported = held;
      e.reason += ` (${held} answers not reported before this one: over ${DNS_REPORTS_PER_MINUTE} reports a minute)`;
    }
    this.emit(e);
  }

  private remember(value: bigint, a: Answered): void {
    this.answered.delete(value);
    this.answered.set(value, a);
    if (this.answered.size > MAX_ANSWERED) this.answered.delete(this.answered.keys().next().value!);
  }
}

/**
 * The host's own addresses (every interface), refreshed every few seconds: a public address of the
 * host leads to the host's own services, like its loopback.
 */
let hostCache: { at: number; values: Set<bigint> } | undefined;
function hostAddresses(): Set<bigint> {
  const now = Date.now();
  if (hostCache !== undefined && now - hostCache.at < 5000) return hostCache.values;
  const values = new Set<bigint>();
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const ip = parseIp(a.address);
      if (ip !== null) values.add((embeddedIpv4(ip) ?? ip).value);
    }
  }
  hostCache = { at: now, values };
  return values;
}

function ipBytes(ip: Ip): Buffer {
  const n = ip.family === 4 ? 4 : 16;
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[n - 1 - i] = Number((ip.value >> BigInt(8 * i)) & 0xffn);
  return b;
}
