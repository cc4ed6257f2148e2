// The host changes its effective gid (glibc setxid: every thread, SIGSETXID, which pthread_sigmask
// cannot block) while launches run. A launch thread inside SwitchToOwner..RestoreIds takes the new
// egid, then RestoreIds puts back the egid it saved: that thread then differs from the process.
const fs = require('node:fs');
const { Sandbox } = require(require('path').join(__dirname, '../../../dist') + '/lib/sandbox/sandbox.js');
function egids() {
  const m = new Map();
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const s = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
      const name = /Name:\s*(.*)/.exec(s)[1];
      const gid = /Gid:\s*(.*)/.exec(s)[1].split(/\s+/).join(',');
      const uid = /Uid:\s*(.*)/.exec(s)[1].split(/\s+/).join(',');
      m.set(tid, `${name} uid=${uid} gid=${gid}`);
    } catch {}
  }
  return m;
}
(async () => {
  const o = { command: ['/bin/true'], stdio: ['ignore', 'ignore', 'ignore'] };
  for (let round = 0; round < 200; round++) {
    const ps = Array.from({ length: 4 }, () => Sandbox.launch(o).then((s) => s.exited, () => {}));
    const g = 4000 + round;
    // flip egid a few times while the launch thread works
    for (let k = 0; k < 20; k++) { process.setegid(g); await new Promise((r) => setImmediate(r)); process.setegid(0); await new Promise((r) => setImmediate(r)); }
    process.setegid(g);
    await Promise.all(ps);
    const all = egids();
    const distinct = new Set([...all.values()].map((v) => v.replace(/^\S+ /, '')));
    if (distinct.size > 1) {
      console.log(`round ${round}: host set egid ${g}; threads disagree:`);
      for (const [tid, v] of all) console.log(`  ${tid} ${v}`);
      process.exit(0);
    }
    process.setegid(0);
  }
  console.log('no divergence seen');
})();
