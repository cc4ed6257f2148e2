/** The trust commands end to end, through bin/warden with a temporary HOME. */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { makePlugin, tmpdir } from './trust-fixtures';

const bin = path.join(__dirname, '..', '..', 'bin', 'warden');

function setup() {
  const home = tmpdir('warden-cli-');
  const env: NodeJS.ProcessEnv = { ...process.env, HOME: home };
  delete env.WARDEN_HOME;
  const warden = (...args: string[]) => {
    const r = spawnSync(bin, args, { encoding: 'utf8', env, cwd: home });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const keys = path.join(home, '.warden', 'keys');
  return { home, warden, keys };
}

/** Files in `dir` apart from the ones named: a leftover temporary file would show up here. */
function leftovers(dir: string, expected: string[]): string[] {
  return fs.readdirSync(dir).filter((f) => !expected.includes(f));
}

t.test('whole flow: keygen → hash → init → add → sign → verify → show', async (t) => {
  const { home, warden, keys } = setup();
  let r = warden('keygen', 'alice');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /signing key [0-9a-f]{16}/);
  t.equal(fs.statSync(path.join(keys, 'alice.key')).mode & 0o777, 0o600, 'secret key is owner-only');
  t.match(fs.readFileSync(path.join(keys, 'alice.pub'), 'utf8'), /"type": "warden-ed25519-public"/);
  const keyId = /signing key ([0-9a-f]{16})/.exec(r.stdout)![1];

  const plugin = makePlugin(home, 'alpha', { 'lib/net.js': `require('https');\n` });
  r = warden('hash', plugin);
  t.equal(r.status, 0, r.stderr);
  const digest = r.stdout.trim();
  t.match(digest, /^sha3-512:[0-9a-f]{128}$/);
  t.equal(warden('hash', plugin).stdout.trim(), digest, 'stable');

  const list = path.join(home, 'trust.json');
  const pub = path.join(keys, 'alice.pub');
  const sec = path.join(keys, 'alice.key');
  t.equal(warden('trust', 'init', list, '--key', pub, '--expires', '30d').status, 0);
  r = warden('trust', 'add', list, plugin, '--publisher', 'acme', '--trust', 'standard', '--permission', 'net:outbound', '--limit', 'memory=268435456');
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, digest);
  r = warden('trust', 'verify', list, '--pin', pub);
  t.equal(r.status, 1, 'unsigned list fails');
  t.match(r.stderr, /ERR_TRUST_UNKNOWN_KEY/);
  r = warden('trust', 'sign', list, '--key', sec);
  t.equal(r.status, 0, r.stderr);

  const state = path.join(home, 'state.json');
  r = warden('trust', 'verify', list, '--pin', pub, '--state', state, '--plugin', plugin);
  t.equal(r.status, 1, 'a --state file that does not exist is refused');
  t.match(r.stderr, /ERR_TRUST_STATE_MISSING/);
  t.notOk(fs.existsSync(state), 'and not created');
  r = warden('trust', 'reset-state', state, '--reason', 'new host', '--audit', path.join(home, 'audit.jsonl'));
  t.equal(r.status, 0, r.stderr);
  r = warden('trust', 'verify', list, '--pin', pub, '--state', state, '--plugin', plugin);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^TRUSTED: .* version 1/);
  t.match(r.stdout, new RegExp(`signed by ${keyId}`));
  t.match(r.stdout, /plugin alpha@1\.0\.0 matches/);
  t.ok(fs.existsSync(state));

  r = warden('trust', 'show', list);
  t.equal(r.status, 0);
  t.match(r.stdout, /version\s+1/);
  t.match(r.stdout, /alpha@1\.0\.0\s+standard\s+publisher=acme\s+permissions=net:outbound\s+limits=memory=268435456/);
  t.match(r.stdout, digest);
  r = warden('trust', 'show', list, '--json');
  t.equal(JSON.parse(r.stdout).signed.entries[0].digest, digest);

  // Change a plugin file: verification of the plugin fails with the digest code.
  fs.appendFileSync(path.join(plugin, 'lib', 'index.js'), '// changed\n');
  r = warden('trust', 'verify', list, '--pin', pub, '--state', state, '--plugin', plugin);
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_DIGEST_MISMATCH/);

  // Re-list the changed plugin: the list moves to version 2; then replaying version 1 is a rollback.
  const v1 = fs.readFileSync(list);
  t.equal(warden('trust', 'add', list, plugin, '--publisher', 'acme', '--replace').status, 0);
  t.equal(warden('trust', 'sign', list, '--key', sec).status, 0);
  r = warden('trust', 'verify', list, '--pin', pub, '--state', state, '--plugin', plugin);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /version 2/);
  const replay = path.join(home, 'old.json');
  fs.writeFileSync(replay, v1);
  r = warden('trust', 'verify', replay, '--pin', pub, '--state', state);
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_ROLLBACK/);

  // remove
  t.equal(warden('trust', 'remove', list, 'alpha@1.0.0').status, 0);
  t.match(warden('trust', 'show', list).stdout, /entries\s+0/);
  t.same(leftovers(home, ['.warden', 'alpha', 'trust.json', 'state.json', 'old.json', 'audit.jsonl']), [], 'no temporary files left');
});

t.test('encrypt and decrypt; a tampered envelope is refused', async (t) => {
  const { home, warden, keys } = setup();
  warden('keygen', 'alice');
  t.equal(warden('keygen', 'env', '--envelope').status, 0);
  t.equal(fs.statSync(path.join(keys, 'env.envkey')).mode & 0o777, 0o600);
  const list = path.join(home, 'trust.json');
  const pub = path.join(keys, 'alice.pub');
  warden('trust', 'init', list, '--key', pub);
  warden('trust', 'sign', list, '--key', path.join(keys, 'alice.key'));
  const envkey = path.join(keys, 'env.envkey');
  let r = warden('trust', 'encrypt', list, '--key', envkey);
  t.equal(r.status, 0, r.stderr);
  const enc = `${list}.enc`;
  r = warden('trust', 'verify', enc, '--pin', pub);
  t.equal(r.status, 2, 'needs the envelope key');
  t.match(r.stderr, /--envelope-key/);
  r = warden('trust', 'verify', enc, '--pin', pub, '--envelope-key', envkey);
  t.equal(r.status, 0, r.stderr);
  const out = path.join(home, 'plain.json');
  t.equal(warden('trust', 'decrypt', enc, '--key', envkey, '--out', out).status, 0);
  t.equal(fs.readFileSync(out, 'utf8'), fs.readFileSync(list, 'utf8'));

  const env = JSON.parse(fs.readFileSync(enc, 'utf8'));
  const ct = Buffer.from(env.ciphertext, 'base64');
  ct[5] ^= 1;
  env.ciphertext = ct.toString('base64');
  fs.writeFileSync(enc, JSON.stringify(env));
  const out2 = path.join(home, 'plain2.json');
  r = warden('trust', 'decrypt', enc, '--key', envkey, '--out', out2);
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_DECRYPT/);
  t.notOk(fs.existsSync(out2), 'no output written on failure');
});

t.test('verify levels: unpinned key exits 3; threshold and rotation through the CLI', async (t) => {
  const { home, warden, keys } = setup();
  for (const n of ['a', 'b', 'c']) warden('keygen', n);
  const k = (n: string, ext: string) => path.join(keys, `${n}.${ext}`);
  const list = path.join(home, 'trust.json');
  warden('trust', 'init', list, '--key', k('c', 'pub'));
  warden('trust', 'sign', list, '--key', k('c', 'key'));
  let r = warden('trust', 'verify', list, '--pin', k('a', 'pub'));
  t.equal(r.status, 3);
  t.match(r.stdout, /^UNPINNED/);

  const l2 = path.join(home, 'two.json');
  warden('trust', 'init', l2, '--key', k('a', 'pub'), '--key', k('b', 'pub'), '--threshold', '2');
  warden('trust', 'sign', l2, '--key', k('a', 'key'));
  r = warden('trust', 'verify', l2, '--pin', k('a', 'pub'), '--pin', k('b', 'pub'), '--threshold', '2');
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_THRESHOLD/);
  warden('trust', 'sign', l2, '--key', k('b', 'key'));
  const state = path.join(home, 'state.json');
  t.equal(warden('trust', 'reset-state', state, '--reason', 'new host', '--audit', path.join(home, 'audit.jsonl')).status, 0);
  r = warden('trust', 'verify', l2, '--pin', k('a', 'pub'), '--pin', k('b', 'pub'), '--threshold', '2', '--state', state);
  t.equal(r.status, 0, r.stderr);

  // Rotate to key c alone: needs a and b (old threshold) and c (new).
  t.equal(warden('trust', 'keys', l2, '--key', k('c', 'pub')).status, 0);
  for (const n of ['a', 'c']) warden('trust', 'sign', l2, '--key', k(n, 'key'));
  r = warden('trust', 'verify', l2, '--pin', k('a', 'pub'), '--pin', k('b', 'pub'), '--threshold', '2', '--state', state);
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_THRESHOLD/);
  warden('trust', 'sign', l2, '--key', k('b', 'key'));
  r = warden('trust', 'verify', l2, '--pin', k('a', 'pub'), '--pin', k('b', 'pub'), '--threshold', '2', '--state', state);
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /key rotation accepted/);
});

t.test('bad input: clear errors naming the argument, nothing half-written', async (t) => {
  const { home, warden, keys } = setup();
  warden('keygen', 'alice');
  const pub = path.join(keys, 'alice.pub');
  const sec = path.join(keys, 'alice.key');
  const list = path.join(home, 'trust.json');

  let r = warden('keygen', 'alice');
  t.equal(r.status, 2);
  t.match(r.stderr, /alice\.key already exists/);
  r = warden('keygen', '../evil');
  t.equal(r.status, 2);
  t.match(r.stderr, /NAME '\.\.\/evil'/);
  r = warden('keygen');
  t.equal(r.status, 2);
  t.match(r.stderr, /missing argument: NAME/);
  r = warden('hash', path.join(home, 'missing'));
  t.equal(r.status, 1);
  t.match(r.stderr, /missing: cannot read the plugin's files \(ENOENT: no such file or directory.*\[ERR_TRUST_TREE_UNREADABLE\]/);
  r = warden('trust', 'frob');
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown subcommand 'frob'/);
  r = warden('trust', 'init', list);
  t.equal(r.status, 2);
  t.match(r.stderr, /--key PUB is required/);
  r = warden('trust', 'init', list, '--key', sec);
  t.equal(r.status, 1);
  t.match(r.stderr, /this is a secret key; give the \.pub file/);
  r = warden('trust', 'init', list, '--key', pub, '--threshold', '2');
  t.equal(r.status, 2);
  t.match(r.stderr, /--threshold 2 is more than the 1 key/);
  r = warden('trust', 'init', list, '--key', pub, '--expires', 'tomorrow');
  t.equal(r.status, 2);
  t.match(r.stderr, /--expires must be a duration/);
  r = warden('trust', 'init', list, '--key', pub, '--bogus');
  t.equal(r.status, 2);
  t.match(r.stderr, /--bogus/);
  t.notOk(fs.existsSync(list), 'no list after failed init');

  t.equal(warden('trust', 'init', list, '--key', pub).status, 0);
  const before = fs.readFileSync(list, 'utf8');
  const plugin = makePlugin(home, 'alpha');
  r = warden('trust', 'add', list, plugin);
  t.equal(r.status, 2);
  t.match(r.stderr, /--publisher is required/);
  r = warden('trust', 'add', list, plugin, '--publisher', 'p', '--limit', 'pids=-1');
  t.equal(r.status, 2);
  t.match(r.stderr, /--limit 'pids=-1'/);
  r = warden('trust', 'add', list, plugin, '--publisher', 'p', '--trust', 'root');
  t.equal(r.status, 2);
  t.match(r.stderr, /--trust 'root'/);
  fs.symlinkSync('/etc/passwd', path.join(plugin, 'passwd'));
  r = warden('trust', 'add', list, plugin, '--publisher', 'p');
  t.equal(r.status, 1);
  t.match(r.stderr, /ERR_TRUST_UNSAFE_FILE/);
  fs.unlinkSync(path.join(plugin, 'passwd'));
  t.equal(fs.readFileSync(list, 'utf8'), before, 'list unchanged by failed commands');

  // World-readable secret key is refused.
  fs.chmodSync(sec, 0o644);
  r = warden('trust', 'sign', list, '--key', sec);
  t.equal(r.status, 1);
  t.match(r.stderr, /chmod 600/);
  fs.chmodSync(sec, 0o600);

  // Malformed list files.
  const bad = path.join(home, 'bad.json');
  for (const content of ['{"signed": ', 'garbage\u0000\u0001', '['.repeat(100000)]) {
    fs.writeFileSync(bad, content);
    r = warden('trust', 'verify', bad, '--pin', pub);
    t.equal(r.status, 1);
    t.match(r.stderr, /ERR_TRUST_MALFORMED/);
    r = warden('trust', 'sign', bad, '--key', sec);
    t.equal(r.status, 1);
    t.match(r.stderr, /ERR_TRUST_MALFORMED/);
    t.equal(fs.readFileSync(bad, 'utf8'), content, 'malformed file left as it was');
  }
  fs.writeFileSync(bad, '');
  fs.truncateSync(bad, 64 * 1024 * 1024);
  r = warden('trust', 'verify', bad, '--pin', pub);
  t.equal(r.status, 1);
  t.match(r.stderr, /limit is \d+.*ERR_TRUST_MALFORMED/);
  t.same(leftovers(home, ['.warden', 'alpha', 'trust.json', 'bad.json']), [], 'no temporary files left');
});
