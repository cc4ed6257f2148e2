/** Plugin directory digests: deterministic, sensitive to what matters, refusing what cannot be vouched for. */
import t from 'tap';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { digestDirectory, isDigest } from '../lib';
import { makePlugin, tmpdir } from './trust-fixtures';

t.test('same tree, same digest; independent of creation order, times and non-exec mode bits', async (t) => {
  const root = tmpdir();
  const a = path.join(root, 'a');
  const b = path.join(root, 'b');
  fs.mkdirSync(path.join(a, 'x'), { recursive: true });
  fs.writeFileSync(path.join(a, 'x', 'one'), '1');
  fs.writeFileSync(path.join(a, 'two'), '2');
  fs.mkdirSync(b);
  fs.writeFileSync(path.join(b, 'two'), '2');
  fs.mkdirSync(path.join(b, 'x'));
  fs.writeFileSync(path.join(b, 'x', 'one'), '1');
  fs.chmodSync(path.join(b, 'two'), 0o600); // another umask
  fs.utimesSync(path.join(b, 'two'), new Date(0), new Date(0));
  const da = await digestDirectory(a);
  t.ok(isDigest(da), da);
  t.equal(await digestDirectory(b), da);
});

t.test('contents, names, the exec bit, empty dirs and symlink targets all change the digest', async (t) => {
  const root = tmpdir();
  const p = makePlugin(root, 'p', { 'data': 'abc', 'other': 'zzz' });
  const seen = new Set<string>([await digestDirectory(p)]);
  const step = async (what: string, f: () => void) => {
    f();
    const d = await digestDirectory(p);
    t.notOk(seen.has(d), what);
    seen.add(d);
  };
  await step('content', () => fs.writeFileSync(path.join(p, 'data'), 'abd'));
  await step('rename', () => fs.renameSync(path.join(p, 'data'), path.join(p, 'data2')));
  await step('exec bit', () => fs.chmodSync(path.join(p, 'data2'), 0o755));
  await step('empty dir', () => fs.mkdirSync(path.join(p, 'empty')));
  await step('symlink', () => fs.symlinkSync('data2', path.join(p, 'link')));
  await step('symlink target', () => { fs.unlinkSync(path.join(p, 'link')); fs.symlinkSync('other', path.join(p, 'link')); });
  // Moving bytes between the name and the content must not collide (length-prefixed encoding).
  const q = tmpdir();
  fs.writeFileSync(path.join(q, 'ab'), 'c');
  const r = tmpdir();
  fs.writeFileSync(path.join(r, 'a'), 'bc');
  t.not(await digestDirectory(q), await digestDirectory(r));
});

t.test('a known tree has a known digest (stable across machines and releases)', async (t) => {
  const root = tmpdir();
  fs.mkdirSync(path.join(root, 'd'));
  fs.writeFileSync(path.join(root, 'd', 'f'), 'hello\n');
  fs.writeFileSync(path.join(root, 'run'), '#!/bin/sh\n', { mode: 0o755 });
  fs.chmodSync(path.join(root, 'run'), 0o755);
  fs.symlinkSync('d/f', path.join(root, 'l'));
  // Recompute the documented encoding independently of lib/trust/digest.ts.
  const { createHash } = await import('node:crypto');
  const h = createHash('sha3-512');
  h.update('warden-tree-v1\0');
  h.update('d\0d\0');
  h.update('f\x00d/f\x00644\x006\x00hello\n');
  h.update('l\0l\0d/f\0');
  h.update('f\x00run\x00755\x0010\x00#!/bin/sh\n');
  t.equal(await digestDirectory(root), `sha3-512:${h.digest('hex')}`);
});

t.test('refused: symlinks leaving the directory, absolute or dangling symlinks', async (t) => {
  for (const [target, kind] of [['../../outside', 'symlink-escape'], ['/etc/passwd', 'symlink-absolute'], ['nowhere', 'symlink-dangling']] as const) {
    const root = tmpdir();
    const p = makePlugin(root, 'p');
    fs.writeFileSync(path.join(root, 'outside'), 'secret');
    fs.symlinkSync(target, path.join(p, 'lib', 'evil'));
    await t.rejects(digestDirectory(p), { code: 'ERR_TRUST_UNSAFE_FILE', kind, path: 'lib/evil' }, target);
  }
  // Each link stays inside lexically, but together they leave: x -> ".", e -> "x/.." is the parent.
  const root = tmpdir();
  const p = makePlugin(root, 'p');
  fs.symlinkSync('.', path.join(p, 'x'));
  fs.symlinkSync('x/..', path.join(p, 'e'));
  await t.rejects(digestDirectory(p), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'symlink-escape', path: 'e' });
});

t.test('refused: fifos, sockets, devices and setuid files', async (t) => {
  const root = tmpdir();
  const p1 = makePlugin(root, 'fifo');
  execFileSync('mkfifo', [path.join(p1, 'pipe')]);
  await t.rejects(digestDirectory(p1), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'fifo', path: 'pipe' });

  const p2 = makePlugin(root, 'sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(p2, 's.sock'), resolve));
  await t.rejects(digestDirectory(p2), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'socket', path: 's.sock' });
  server.close();

  const p3 = makePlugin(root, 'suid');
  fs.writeFileSync(path.join(p3, 'su'), 'x');
  fs.chmodSync(path.join(p3, 'su'), 0o4755);
  await t.rejects(digestDirectory(p3), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'setuid' });

  // Creating a device node needs CAP_MKNOD; where we cannot, a symlink to one is refused as leaving.
  const p4 = makePlugin(root, 'dev');
  try {
    execFileSync('mknod', [path.join(p4, 'null'), 'c', '1', '3'], { stdio: 'ignore' });
    await t.rejects(digestDirectory(p4), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'device', path: 'null' });
  } catch {
    fs.symlinkSync('/dev/null', path.join(p4, 'null'));
    await t.rejects(digestDirectory(p4), { code: 'ERR_TRUST_UNSAFE_FILE', path: 'null' });
  }
});

t.test('not a directory', async (t) => {
  const root = tmpdir();
  fs.writeFileSync(path.join(root, 'f'), 'x');
  await t.rejects(digestDirectory(path.join(root, 'f')), { code: 'ERR_TRUST_UNSAFE_FILE', kind: 'not-directory' });
  await t.rejects(digestDirectory(path.join(root, 'missing')), { code: 'ERR_TRUST_TREE_UNREADABLE', errno: 'ENOENT' });
});
