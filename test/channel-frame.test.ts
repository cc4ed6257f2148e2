// The ring framing itself (native/channel_frame.{h,cc}: pure code, no kernel), driven by a C++
// program built here against the addon's own source: a head stopping 8 bytes before the end of a
// lap, a hostile skip there, and thousands of random message sequences through encoder and decoder
// with the consumer draining at random moments, each message checked byte for byte.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const repo = path.join(__dirname, '..', '..');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-frame-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const bin = path.join(dir, 'roundtrip');
const sources = [path.join(repo, 'test', 'helpers', 'channel-frame-roundtrip.cc'), path.join(repo, 'native', 'channel_frame.cc')];
// Whichever C++ compiler the machine has (CI installs clang, not g++).
let cc: { status: number | null; stderr: string } = { status: 1, stderr: 'no C++ compiler (c++, clang++, g++) built it' };
for (const compiler of ['c++', 'clang++', 'g++']) {
  const r = spawnSync(compiler, ['-std=c++17', '-O1', '-o', bin, ...sources], { encoding: 'utf8' });
  if (r.status === 0) {
    cc = r;
    break;
  }
}

function run(...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

t.test('framing round trips', { skip: cc.status !== 0 ? `c++ failed: ${cc.stderr}` : false }, async (t) => {
  const det = run('det');
  t.equal(det.status, 0, `a message after the head stopped 8 bytes before the lap end arrives (rings of 4 KiB, 64 KiB, 1 MiB): ${det.out}`);
  const hostile = run('hostile');
  t.equal(hostile.status, 0, `a skip frame 8 bytes before the lap end is refused: ${hostile.out}`);
  const random = run('random', '60');
  t.equal(random.status, 0, `60 seeds x 3 ring sizes x 2000 random messages arrive intact and in order: ${random.out}`);
});
