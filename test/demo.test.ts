/**
 * `npm run demo` is the project's main example: it must keep working, as root and as an ordinary
 * user, and say what happened. Runs the compiled demo and checks its report.
 */
import t, { Test } from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { reachablePackage } from './helpers/reachable';
import { rootOnly } from './helpers/sandbox';

/** The compiled demo under a package root (the checkout, or a copy another user can reach). */
const demoUnder = (root: string): string => path.join(root, 'dist', 'examples', 'demo.js');
const CHECKOUT = path.resolve(__dirname, '..', '..');

function runDemo(prefix: string[], root = CHECKOUT): { status: number | null; out: string } {
  // `env -i` because the test runner adds its own preloads to the environment of child processes,
  // and those write into the test runner's directory (not writable by another user).
  const env = ['/usr/bin/env', '-i', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, 'HOME=/tmp'];
  const argv = [...prefix, ...env, process.execPath, demoUnder(root)];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 120_000, cwd: root });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

/** fetcher: the granted API answers, the metadata address is refused by number and by name, and each is an audit line. */
function checkNetwork(t: Test, out: string): void {
  const skip = /^== Network by policy.*\n {2}skipped: (.*)$/m.exec(out);
  if (skip !== null) {
    t.comment(`network part skipped by the demo: ${skip[1]}`);
    t.match(skip[1], /cannot enforce network policies|no address besides loopback/, 'a skip names its reason');
    return;
  }
  t.match(out, /^ {2}GET http:\/\/\S+\/v1\/weather\?city=Oslo: 200 \{"city":"Oslo","forecast":"rain","celsius":7\}$/m, 'the granted API answers');
  t.match(out, /^ {2}GET http:\/\/169\.254\.169\.254\/\S*: refused \(EACCES\)$/m, 'the metadata address is refused');
  t.match(out, /^ {2}GET http:\/\/status\.demo\/\S*: refused \(ENOTFOUND\)$/m, 'a granted name resolving to it is not answered');
  t.match(out, /^ {4}info {5}allowed connect \S+:\d+/m, 'the allowed connection is an audit line');
  t.match(out, /^ {4}warning {2}refused connect 169\.254\.169\.254:80: metadata address/m, 'the refusal is an audit line with its reason');
  t.match(out, /^ {4}warning {2}refused dns status\.demo: metadata address in the answer, dropped$/m, 'the dropped DNS answer too');
  t.match(out, /^ {4}info {5}closed \S+:\d+ \(\d+ bytes out, \d+ in\)$/m, 'and the closed connection, with its bytes');
}

/** The bus example: a service call and a granted read answered, an event delivered, an ungranted read refused and audited. */
function checkBus(t: Test, out: string): void {
  t.match(out, /^ {2}prices published price\.changed to 1 subscriber; shop's handler logged: price\.changed from prices: \{"item":"tea","cents":390\}$/m, 'the event reached its subscriber, sender stamped by the host');
  t.match(out, /^ {2}shop called prices\/quote\('tea'\): \{"item":"tea","cents":390,"caller":"shop"\}/m, 'the service call answered, naming its caller');
  t.match(out, /^ {2}shop read prices\/public\/menu \(granted\): \{"tea":390,"coffee":420\}$/m, 'the granted read answered');
  t.match(out, /^ {2}shop read prices\/internal\/cost \(not granted\): refused \(ERR_BUS_DENIED\)$/m, 'the read outside the grant is refused');
  t.match(out, /^ {4}audit: warning {2}shop {2}bus: refused data get 'prices\/internal\/cost': not granted/m, 'and the refusal is an audit line');
}

function checkCommon(t: Test, out: string): void {
  t.match(out, /counter\s+1\.0\.0\s+active/, 'plugins loaded');
  t.match(out, /ann: headers=\{"x-greeting":"hello ann"\} counted=1/, 'the waterfall hook ran through the plugins');
  t.match(out, /read \/etc\/shadow: refused \(ENOENT\)/, 'host files are invisible');
  t.match(out, /write \/usr\/bin\/evil: refused \(EROFS\)/, 'system directories are read-only');
  t.match(out, /connect 1\.1\.1\.1:80: refused \(EAFNOSUPPORT\)/, 'no network');
  t.match(out, /escaper is failed: seccomp — forbidden syscall execve/, 'running a program without sys:exec kills it');
  t.match(out, /read its granted file: "Plugins run in kernel sandboxes here\."/, 'a granted path is readable');
  t.match(out, /reloaded( from the warm pool)?: pid \d+ → \d+; \d+ requests during the update, 0 failed; versions seen: counter 1\.0\.0, counter 2\.0\.0/, 'hot reload lost nothing');
  checkNetwork(t, out);
  checkBus(t, out);
  t.match(out, /hash chain intact/);
  t.match(out, /every plugin unloaded/);
}

t.test('as the current user', async (t) => {
  const { status, out } = runDemo([]);
  t.equal(status, 0, out);
  checkCommon(t, out);
  rootOnly(t, 'the leak is stopped by its cgroup', 'an unprivileged host has no cgroup memory limit (the demo runs degraded)', () => t.match(out, /leaky is failed: memory — exceeded its memory limit/, 'the leak is stopped by its cgroup'));
});

t.test('as an ordinary user', async (t) => {
  const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => fs.existsSync(p));
  if (process.getuid?.() !== 0 || setpriv === undefined) {
    t.plan(0, process.getuid?.() !== 0 ? 'skip: already unprivileged (the test above was this case)' : 'skip: setpriv (util-linux) is not installed');
    return;
  }
  // The checkout may sit where uid 1000 cannot go (a 0700 directory): run a copy it can reach.
  const reachable = reachablePackage();
  if (reachable.skip !== undefined) {
    t.plan(0, reachable.skip);
    return;
  }
  const { status, out } = runDemo([setpriv, '--reuid', '1000', '--regid', '1000', '--clear-groups', '--inh-caps=-all'], reachable.root);
  t.equal(status, 0, out);
  t.match(out, /host uid 1000 \(unprivileged/);
  t.match(out, /degraded as an ordinary user/, 'the demo says what degrades');
  checkCommon(t, out);
});
