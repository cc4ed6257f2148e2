/**
 * Network egress by policy, through real sandboxes and real servers. All traffic stays on this
 * machine: the test builds a small internet of network namespaces (test/helpers/net-world.ts) and
 * runs its own host side inside one of them. This file runs twice: first outside, where it builds
 * the namespaces and starts itself again inside the "host" namespace; there it runs the tests, and
 * its TAP output is this file's output.
 *
 * Each attack is also run, as a control, the way a plugin with `net:outbound` ran before network
 * policies (the host's network shared): there it succeeds, which is what makes the refusal mean
 * something.
 */
import { spawnSync } from 'node:child_process';
import { createWorld, worldUnavailable } from './helpers/net-world';

const RECORDS = {
  'api.test': ['198.51.100.1', '2001:db8::1'],
  'v4only.test': ['198.51.100.1'],
  'other.test': ['203.0.113.10'],
  'ports.test': ['198.51.100.1'],
  'a.wild.test': ['198.51.100.1'],
  'loop.test': ['127.0.0.1', '::1'],
  'meta.test': ['169.254.169.254', 'fd00:ec2::254'],
  'private.test': ['10.1.2.3'],
  'mapped.test': ['::ffff:127.0.0.1'],
  'rebind.test': { rotate: ['198.51.100.1', '10.1.2.3', '127.0.0.1'] },
  '*.many.test': ['198.51.100.1'],
};

if (process.env.WARDEN_NET_WORLD === undefined) {
  const why = worldUnavailable();
  if (why !== null) {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    const t = require('tap') as typeof import('tap');
    t.plan(0, `skipped: ${why}`);
  } else {
    void createWorld(RECORDS).then((world) => {
      let status = 1;
      try {
        const [cmd, ...args] = world.hostExec([process.execPath, __filename]);
        const r = spawnSync(cmd!, args, {
          stdio: 'inherit',
          env: { ...process.env, WARDEN_NET_WORLD: world.hostNs },
          timeout: 280_000,
        });
        status = r.status ?? 1;
      } finally {
        world.destroy();
      }
      process.exitCode = status;
    });
  }
} else {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  require('./helpers/net-egress-cases');
}
