/**
 * The dashboard: one page served by the host, on request, read-only.
 *
 * - Loopback by default; another address only with allowRemote (then put TLS in front of it).
 * - A token always (random when none is given), compared in constant time (sha256 of both sides,
 *   crypto.timingSafeEqual). The page is opened once with ?token=...: the server answers with an
 *   HttpOnly SameSite=Strict cookie and a redirect that drops the token from the address; API calls
 *   may send `Authorization: Bearer TOKEN` instead. Anything else gets 401.
 * - The Host header must name the address served (a DNS-rebinding page cannot borrow the cookie).
 * - Strict CSP: scripts and styles only from this server's own files (no inline script, no CDN, no
 *   eval), nothing may frame it. The chart code is uPlot from the package's dependencies.
 * - The page renders everything a plugin can influence (names, versions, reasons, log lines) with
 *   textContent, never as markup.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';

import { InvalidOptionError } from '../errors';
import type { AuditEvent, AuditFilter } from '../audit';
import type { HistoryView, HostUsage } from '../metrics';

export interface DashboardOptions {
  /** Default 0: a free port (read it from listen()'s answer or .url). */
  port?: number;
  /** Default '127.0.0.1'. */
  host?: string;
  /** At least 16 characters; default: 32 random bytes, base64url. */
  token?: string;
  /** Needed to serve a non-loopback address. */
  allowRemote?: boolean;
  /** How often open pages get a usage snapshot, ms. Default 2000. */
  pushMs?: number;
}

/** What the dashboard reads. */
export interface DashboardSource {
  usage(): HostUsage;
  history(plugin: string): HistoryView | undefined;
  audit: { events(filter?: AuditFilter): AuditEvent[]; subscribe(listener: (e: AuditEvent) => void): () => void };
}

const STATIC_DIR = path.join(__dirname, '..', '..', '..', 'lib', 'dashboard', 'static');
const COOKIE = 'warden_dashboard';
/**
 * Output queued for one event-stream client that has not been read yet. A page that stops reading
 * (a stalled tab, a client that pauses its socket) would otherwise make the host buffer every audit
 * line and usage push for it without end. Past this the client is cut off; EventSource reconnects
 * and reloads the state from /api/usage and /api/audit.
 */
const MAX_UNSENT_BYTES = 1024 * 1024;
/** Open event streams at once; each holds up to MAX_UNSENT_BYTES. */
const MAX_STREAMS = 32;
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

interface Asset {
  file: string;
  type: string;
}

function assets(): Record<string, Asset> {
  const uplot = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  return {
    '/': { file: path.join(STATIC_DIR, 'index.html'), type: 'text/html; charset=utf-8' },
    '/static/app.js': { file: path.join(STATIC_DIR, 'app.js'), type: 'text/javascript; charset=utf-8' },
    '/static/app.css': { file: path.join(STATIC_DIR, 'app.css'), type: 'text/css; charset=utf-8' },
    '/static/uplot.js': { file: path.join(uplot, 'uPlot.iife.min.js'), type: 'text/javascript; charset=utf-8' },
    '/static/uplot.css': { file: path.join(uplot, 'uPlot.min.css'), type: 'text/css; charset=utf-8' },
  };
}

/** A cookie's value, percent-decoded; undefined when it is not valid percent-encoding (never a throw). */
function cookieValue(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}

function digest(s: string): Buffer {
  return crypto.createHash('sha256').update(s).digest();
}

export class Dashboard {
  private server: http.Server | undefined;
  private tokenDigest: Buffer | undefined;
  private allowedHosts = new Set<string>();
  private readonly clients = new Set<http.ServerResponse>();
  private pushTimer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private files: Record<string, Asset> | undefined;
  /** http://host:port/?token=... once listening. */
  url: string | undefined;
  token: string | undefined;

  constructor(private readonly source: DashboardSource) {}

  async listen(options: DashboardOptions = {}): Promise<{ url: string; port: number; token: string }> {
    if (this.server !== undefined) throw new InvalidOptionError('dashboard', 'is already listening; close() it first');
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    if (!Number.isSafeInteger(port) || port < 0 || port > 65535) throw new InvalidOptionError('dashboard.port', 'must be 0..65535');
    if (net.isIP(host) === 0) throw new InvalidOptionError('dashboard.host', `must be an IP address, got '${host}'`);
    const loopback = host === '::1' || host.startsWith('127.');
    if (!loopback && options.allowRemote !== true) throw new InvalidOptionError('dashboard.host', `${host} is not loopback: set allowRemote: true (and put TLS in front) to serve it`);
    const token = options.token ?? crypto.randomBytes(32).toString('base64url');
    if (typeof token !== 'string' || token.length < 16) throw new InvalidOptionError('dashboard.token', 'must be a string of at least 16 characters');
    const pushMs = options.pushMs ?? 2000;
    if (!Number.isSafeInteger(pushMs) || pushMs < 100) throw new InvalidOptionError('dashboard.pushMs', 'must be at least 100 ms');
    this.files = assets();
    this.tokenDigest = digest(token);
    this.token = token;
    const server = http.createServer((req, res) => this.handle(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const bound = (server.address() as net.AddressInfo).port;
    const shown = net.isIPv6(host) ? `[${host}]` : host;
    this.allowedHosts = new Set([`${shown}:${bound}`, ...(loopback ? [`localhost:${bound}`] : [])]);
    this.unsubscribe = this.source.audit.subscribe((e) => this.broadcast('audit', e));
    this.pushTimer = setInterval(() => {
      if (this.clients.size > 0) this.broadcast('usage', this.source.usage());
    }, pushMs);
    this.pushTimer.unref();
    this.url = `http://${shown}:${bound}/?token=${encodeURIComponent(token)}`;
    return { url: this.url, port: bound, token };
  }

  async close(): Promise<void> {
    if (this.pushTimer !== undefined) clearInterval(this.pushTimer);
    this.pushTimer = undefined;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    for (const c of this.clients) c.end();
    this.clients.clear();
    const s = this.server;
    this.server = undefined;
    if (s !== undefined) {
      s.closeAllConnections();
      await new Promise((r) => s.close(r));
    }
  }

  private authorized(req: http.IncomingMessage, query: URLSearchParams): 'header' | 'cookie' | 'query' | undefined {
    const check = (candidate: string | undefined): boolean =>
      candidate !== undefined && crypto.timingSafeEqual(digest(candidate), this.tokenDigest!);
    const auth = req.headers.authorization;
    if (auth !== undefined && auth.startsWith('Bearer ') && check(auth.slice(7))) return 'header';
    const cookie = (req.headers.cookie ?? '').split(';').map((c) => c.trim()).find((c) => c.startsWith(`${COOKIE}=`));
    if (cookie !== undefined && check(cookieValue(cookie.slice(COOKIE.length + 1)))) return 'cookie';
    const q = query.get('token');
    if (q !== null && check(q)) return 'query';
    return undefined;
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Frame-Options', 'DENY');
    const fail = (code: number, text: string): void => {
      res.writeHead(code, { 'Content-Type': 'text/plain; charset=utf-8' });
      res.end(`${text}\n`);
    };
    if (req.method !== 'GET') return fail(405, 'read-only: GET only');
    if (!this.allowedHosts.has(req.headers.host ?? '')) return fail(421, 'unexpected Host header');
    const url = new URL(req.url ?? '/', 'http://x');
    const how = this.authorized(req, url.searchParams);
    if (how === undefined) {
      res.setHeader('WWW-Authenticate', 'Bearer');
      return fail(401, 'a token is needed: open the URL the host printed (…/?token=…) or send Authorization: Bearer TOKEN');
    }
    if (how === 'query') {
      // Trade the token in the address for a cookie, so it leaves the address bar and history.
      res.setHeader('Set-Cookie', `${COOKIE}=${encodeURIComponent(this.token!)}; HttpOnly; SameSite=Strict; Path=/`);
      res.writeHead(303, { Location: '/' });
      res.end();
      return;
    }
    try {
      this.route(url, res, fail);
    } catch (e) {
      fail(500, `dashboard error: ${(e as Error).message}`);
    }
  }

  private route(url: URL, res: http.ServerResponse, fail: (code: number, text: string) => void): void {
    const json = (v: unknown): void => {
      res.writeHead(200, { 'Content-Type': 'application/json; charset=utf-8' });
      res.end(JSON.stringify(v));
    };
    const asset = this.files![url.pathname];
    if (asset !== undefined) {
      res.writeHead(200, { 'Content-Type': asset.type });
      res.end(fs.readFileSync(asset.file));
      return;
    }
    if (url.pathname === '/api/usage') return json(this.source.usage());
    if (url.pathname === '/api/history') {
      const h = this.source.history(url.searchParams.get('plugin') ?? '');
      return h === undefined ? fail(404, 'no such plugin') : json(h);
    }
    if (url.pathname === '/api/audit') {
      const limit = Math.min(5000, Math.max(1, Number(url.searchParams.get('limit') ?? 1000) || 1000));
      return json(this.source.audit.events({ limit }));
    }
    if (url.pathname === '/api/events') {
      if (this.clients.size >= MAX_STREAMS) return fail(503, `at most ${MAX_STREAMS} live views at once: close one`);
      res.writeHead(200, { 'Content-Type': 'text/event-stream; charset=utf-8', Connection: 'keep-alive' });
      res.write(': warden\n\n');
      this.clients.add(res);
      res.on('close', () => this.clients.delete(res));
      this.send(res, 'usage', this.source.usage());
      return;
    }
    fail(404, 'not found');
  }

  private send(res: http.ServerResponse, event: string, data: unknown): void {
    if (res.writableLength > MAX_UNSENT_BYTES) {
      // Not reading: cut it off rather than hold its backlog (see MAX_UNSENT_BYTES).
      this.clients.delete(res);
      res.destroy();
      return;
    }
    // JSON has no raw newline, so one data line per event.
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private broadcast(event: string, data: unknown): void {
    for (const c of this.clients) this.send(c, event, data);
  }
}
