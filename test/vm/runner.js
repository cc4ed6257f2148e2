// @ts-check
// Runs inside the VM (started by /init): every file of test/vm/tests.resolved with plain
// `node file.test.js`, once per phase, and prints one TAP stream on the console: a subtest per file
// and phase (the file's own TAP indented), then a summary line that run.sh parses.
//
// Phases:
//   root     the test process is in the root cgroup, every controller enabled below it.
//   systemd  the test process is in /sys/fs/cgroup/system.slice/warden-test, as a systemd service
//            is: not the root, controllers enabled in system.slice but not in warden-test, and the
//            "no internal processes" rule applies to anything the test creates below its cgroup.
// After each file: any cgroup the file left behind, or process left in its cgroup, fails it.
//
// Kernel command line (set by run.sh): warden.tests=a.test.js,b.test.js (a subset, by substring),
// warden.phases=root,systemd, warden.file_timeout=SECONDS.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawn } = require('node:child_process');

const CG = '/sys/fs/cgroup';
const cmdline = fs.readFileSync('/proc/cmdline', 'utf8');
/** @param {string} key */
const arg = (key) => (new RegExp(`(?:^|\\s)warden\\.${key}=(\\S*)`).exec(cmdline) || [])[1];

let files = fs.readFileSync(path.join(__dirname, 'tests.resolved'), 'utf8').split('\n').filter(Boolean);
const only = arg('tests');
if (only) {
  const wanted = only.split(',').filter(Boolean).map((w) => w.replace(/^(test\/)/, '').replace(/\.ts$/, ''));
  files = files.filter((f) => wanted.some((w) => f.includes(w)));
}
const phases = (arg('phases') || 'root,systemd').split(',').filter(Boolean);
const fileTimeoutMs = Number(arg('file_timeout') || 300) * 1000;

const out = (/** @type {string} */ s) => process.stdout.write(s + '\n');
const totals = { files: 0, failedFiles: 0, skippedFiles: 0, pass: 0, fail: 0, skip: 0, todo: 0 };
let n = 0;

/** All cgroup directories below dir, deepest first. @param {string} dir @returns {string[]} */
function cgroupsBelow(dir) {
  /** @type {string[]} */
  const res = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const p = path.join(dir, e.name);
    res.push(...cgroupsBelow(p), p);
  }
  return res;
}
/** @param {string} cg */
function procsIn(cg) {
  try { return fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean); } catch { return []; }
}
/** User-space processes (kernel threads have an empty cmdline), except this runner. */
function userProcesses() {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d) && d !== String(process.pid) && d !== '1').filter((d) => {
    try { return fs.readFileSync(`/proc/${d}/cmdline`).length > 0; } catch { return false; }
  });
}
/** Kill everything in cg and below, then remove the directories below it (and cg if removeSelf). */
function wipe(/** @type {string} */ cg, /** @type {boolean} */ removeSelf) {
  try { fs.writeFileSync(path.join(cg, 'cgroup.kill'), '1'); } catch { /* gone or no cgroup.kill */ }
  const dirs = cgroupsBelow(cg);
  if (removeSelf) dirs.push(cg);
  for (const d of dirs) {
    for (let i = 0; i < 50; i++) {
      try { fs.rmdirSync(d); break; } catch (e) {
        if (/** @type {any} */ (e).code === 'ENOENT') break;
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); // processes still exiting
      }
    }
  }
}

/** @param {string} phase */
function setUpPhase(phase) {
  if (phase === 'root') return { cgroup: CG, wrap: /** @type {string[]} */ ([]) };
  // The layout of a systemd host: controllers flow down to system.slice; the service's own cgroup
  // has the service's processes and enables nothing.
  const slice = path.join(CG, 'system.slice');
  const svc = path.join(slice, 'warden-test');
  fs.mkdirSync(slice, { recursive: true });
  const controllers = fs.readFileSync(path.join(CG, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/);
  for (const c of controllers) fs.writeFileSync(path.join(slice, 'cgroup.subtree_control'), `+${c}`);
  fs.mkdirSync(svc, { recursive: true });
  return { cgroup: svc, wrap: ['/bin/sh', '-c', 'echo $$ > "$0/cgroup.procs" && exec "$@"', svc] };
}

/** @param {string} phase @param {{cgroup: string, wrap: string[]}} setup @param {string} file */
function runFile(phase, setup, file) {
  return new Promise((resolve) => {
    const name = `${phase}: ${file}`;
    out(`# Subtest: ${name}`);
    const before = new Set(phase === 'root' ? cgroupsBelow(CG) : []);
    const procsBefore = new Set(userProcesses());
    // The layout above the test must be what it was: a test may not change its parents' controllers.
    const watched = phase === 'root' ? [CG] : [CG, path.dirname(setup.cgroup), setup.cgroup];
    const controlBefore = watched.map((d) => fs.readFileSync(path.join(d, 'cgroup.subtree_control'), 'utf8').trim());
    const started = Date.now();
    const argv = [...setup.wrap, process.execPath, file];
    const child = spawn(argv[0], argv.slice(1), {
      cwd: '/warden',
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, WARDEN_VM: '1', WARDEN_VM_PHASE: phase, WARDEN_VM_CGROUP: setup.cgroup.slice(CG.length) || '/' },
    });
    const st = { plan: /** @type {string|null} */ (null), notOk: 0, pass: 0, fail: 0, skip: 0, todo: 0, counts: false };
    /** @param {NodeJS.ReadableStream} stream @param {boolean} isErr */
    const lines = (stream, isErr) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) { line(buf.slice(0, i), isErr); buf = buf.slice(i + 1); }
      });
      stream.on('end', () => { if (buf) line(buf, isErr); });
    };
    /** @param {string} l @param {boolean} isErr */
    const line = (l, isErr) => {
      if (isErr) { out(`    # stderr: ${l}`); return; }
      out(`    ${l}`);
      if (/^1\.\.\d+/.test(l)) st.plan = l;
      else if (/^not ok \d+/.test(l) && !/#\s*(TODO|SKIP)/i.test(l)) st.notOk++;
      const m = /^# \{ total: \d+(.*)\}/.exec(l);
      if (m) {
        st.counts = true;
        for (const k of /** @type {const} */ (['pass', 'fail', 'skip', 'todo'])) {
          const v = new RegExp(`\\b${k}: (\\d+)`).exec(m[1]);
          st[k] += v ? Number(v[1]) : 0;
        }
      }
    };
    lines(/** @type {any} */ (child.stdout), false);
    lines(/** @type {any} */ (child.stderr), true);
    let timedOut = false;
    /** @type {NodeJS.Timeout | undefined} */
    let lastResort;
    const timer = setTimeout(() => {
      timedOut = true;
      if (phase === 'root') {
        try { process.kill(-(/** @type {number} */ (child.pid)), 'SIGKILL'); } catch { /* gone */ }
        // Sandboxes start their own sessions, outside the file's process group, and may hold its
        // stdout open: 'close' would never come and the whole VM would hang on one file.
        for (const p of userProcesses().filter((q) => !procsBefore.has(q))) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
      } else { try { fs.writeFileSync(path.join(setup.cgroup, 'cgroup.kill'), '1'); } catch { /* gone */ } }
      // Whatever still holds the pipes, the file is over: stop waiting for them.
      lastResort = setTimeout(() => { child.stdout?.destroy(); child.stderr?.destroy(); }, 10_000);
    }, fileTimeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      clearTimeout(lastResort);
      const ms = Date.now() - started;
      /** @type {string[]} */
      const problems = [];
      if (timedOut) problems.push(`timed out after ${fileTimeoutMs / 1000}s`);
      else if (code !== 0) problems.push(`exited with ${signal ? `signal ${signal}` : `status ${code}`}`);
      if (!st.plan) problems.push('printed no TAP plan');
      if (st.notOk) problems.push(`${st.notOk} top-level test(s) not ok`);
      // Nothing left behind: no cgroup the file created, no process in the test's cgroup.
      const left = phase === 'root'
        ? cgroupsBelow(CG).filter((d) => !before.has(d))
        : cgroupsBelow(setup.cgroup);
      if (left.length) {
        problems.push(`left cgroups behind: ${left.map((d) => d.slice(CG.length)).join(' ')}`);
        for (const d of left) wipe(d, true);
      }
      watched.forEach((d, i) => {
        const now = fs.readFileSync(path.join(d, 'cgroup.subtree_control'), 'utf8').trim();
        if (now === controlBefore[i]) return;
        problems.push(`changed ${d.slice(CG.length) || '/'}/cgroup.subtree_control from "${controlBefore[i]}" to "${now}"`);
        const want = controlBefore[i].split(/\s+/).filter(Boolean);
        const change = [...want.map((c) => `+${c}`), ...now.split(/\s+/).filter((c) => c && !want.includes(c)).map((c) => `-${c}`)];
        for (const c of change) { try { fs.writeFileSync(path.join(d, 'cgroup.subtree_control'), c); } catch { /* reported */ } }
      });
      if (phase === 'root') {
        // In the root cgroup a stray process has no cgroup of its own to betray it: look at /proc.
        const stray = userProcesses().filter((p) => !procsBefore.has(p));
        if (stray.length) {
          problems.push(`left processes behind: ${stray.map((p) => `${p} (${fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' ').trim()})`).join(', ')}`);
          for (const p of stray) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
        }
      } else {
        const procs = procsIn(setup.cgroup);
        if (procs.length) {
          problems.push(`left processes in ${setup.cgroup.slice(CG.length)}: ${procs.join(' ')}`);
          wipe(setup.cgroup, false);
        }
      }
      if (!st.counts && st.plan && !problems.length) st.pass += Number((/^1\.\.(\d+)/.exec(st.plan) || [])[1] || 0);
      totals.files++;
      totals.pass += st.pass; totals.fail += st.fail; totals.skip += st.skip; totals.todo += st.todo;
      if (!problems.length && st.plan && /^1\.\.0\b/.test(st.plan)) {
        totals.skippedFiles++;
        out(`ok ${++n} - ${name} # SKIP ${st.plan.replace(/^1\.\.0\s*(#\s*(skip\w*)?\s*)?/i, '') || 'no tests'}`);
      } else if (problems.length) {
        totals.failedFiles++;
        if (st.fail === 0) totals.fail++; // count the file's failure even when its assertions passed
        out(`not ok ${++n} - ${name} # time=${ms}ms`);
        out('  ---');
        for (const p of problems) out(`  problem: ${JSON.stringify(p)}`);
        out('  ...');
      } else {
        out(`ok ${++n} - ${name} # time=${ms}ms`);
      }
      resolve(undefined);
    });
  });
}

async function main() {
  out('TAP version 14');
  out(`# warden-vm: ${files.length} test file(s), phases ${phases.join(',')}`);
  for (const phase of phases) {
    let setup;
    try {
      setup = setUpPhase(phase);
    } catch (e) {
      totals.failedFiles++; totals.fail++;
      out(`not ok ${++n} - ${phase}: set up the phase # ${String(e).replace(/\n/g, ' ')}`);
      continue;
    }
    for (const f of files) await runFile(phase, setup, f);
  }
  out(`1..${n}`);
  const result = totals.failedFiles === 0 && totals.fail === 0 && totals.pass > 0 ? 'ok' : 'fail';
  out(`# warden-vm summary: files=${totals.files} failed_files=${totals.failedFiles} skipped_files=${totals.skippedFiles}` +
    ` pass=${totals.pass} fail=${totals.fail} skip=${totals.skip} todo=${totals.todo} result=${result}`);
}
main().catch((e) => { out(`Bail out! runner crashed: ${String(e && e.stack || e).replace(/\n/g, ' | ')}`); process.exitCode = 1; });
