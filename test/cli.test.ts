import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const bin = path.join(__dirname, '..', '..', 'bin', 'warden');

t.test('unknown command is refused with usage', async (t) => {
  const r = spawnSync(bin, ['frobnicate'], { encoding: 'utf8' });
  t.equal(r.status, 2);
  t.match(r.stderr, /unknown command 'frobnicate'/);
});
