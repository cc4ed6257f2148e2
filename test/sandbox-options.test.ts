/**
 * Bad input: each gives an InvalidOptionError naming the field, and nothing is started.
 */
import t from 'tap';
import { Sandbox } from '../lib/sandbox/sandbox';
import { InvalidOptionError } from '../lib/errors';
import type { SpawnOptions } from '../lib/sandbox/types';

const cases: Array<[string, unknown, string, RegExp]> = [
  ['missing command', {}, 'command', /is missing/],
  ['empty command', { command: [] }, 'command', /is missing/],
  ['non-string argument', { command: ['/bin/echo', 3] }, 'command[1]', /string/],
  ['NUL in argument', { command: ['/bin/echo', 'a\0b'] }, 'command[1]', /NUL/],
  ['unknown option', { command: ['/bin/true'], bindz: [] }, 'bindz', /typo/],
  ['unknown namespace', { command: ['/bin/true'], namespaces: { time: true } }, 'namespaces.time', /not a namespace/],
  ['shareNet with net namespace', { command: ['/bin/true'], shareNet: true, namespaces: { net: true } }, 'shareNet', /conflicts/],
  ['unreadable bind source', { command: ['/bin/true'], binds: [{ source: '/no/such/dir' }] }, 'binds[0].source', /cannot be read/],
  ['relative bind source', { command: ['/bin/true'], binds: [{ source: 'rel/dir' }] }, 'binds[0].source', /absolute/],
  ['bind onto /', { command: ['/bin/true'], binds: [{ source: '/usr', target: '/' }] }, 'binds[0].target', /cannot be \//],
  ['two binds onto one target', { command: ['/bin/true'], binds: [{ source: '/usr', target: '/x' }, { source: '/etc', target: '/x' }] }, 'binds[1]', /already uses/],
  ['negative uid', { command: ['/bin/true'], uid: -5 }, 'uid', /integer id/],
  ['host root', { command: ['/bin/true'], hostUid: 0 }, 'hostUid', /never runs as host root|only root/],
  ['absurd rlimit', { command: ['/bin/true'], rlimits: { nofile: -1 } }, 'rlimits.nofile.soft', /whole number/],
  ['soft above hard', { command: ['/bin/true'], rlimits: { nofile: { soft: 10, hard: 5 } } }, 'rlimits.nofile', /exceeds/],
  ['unknown rlimit', { command: ['/bin/true'], rlimits: { files: 3 } }, 'rlimits.files', /not a resource/],
  ['bad tmp size', { command: ['/bin/true'], tmpSize: 'lots' }, 'tmpSize', /not a size/],
  ['bad hostname', { command: ['/bin/true'], hostname: 'no spaces please' }, 'hostname', /letters/],
  ['fd onto stdio', { command: ['/bin/true'], fds: [{ fd: 0, target: 2 }] }, 'fds[0].target', /3 to 1023/],
  ['closed fd', { command: ['/bin/true'], fds: [{ fd: 999, target: 5 }] }, 'fds[0].fd', /not an open fd/],
  ['bad stdio', { command: ['/bin/true'], stdio: ['pipe', 'pipe', 'socket'] }, 'stdio[2]', /must be/],
  ['bad env value', { command: ['/bin/true'], env: { A: 1 } }, 'env.A', /string/],
  ['relative cwd', { command: ['/bin/true'], cwd: 'tmp' }, 'cwd', /absolute/],
  ['absurd setup timeout', { command: ['/bin/true'], setupTimeout: 1e12 }, 'setupTimeout', /milliseconds/],
];

for (const [name, options, field, message] of cases) {
  t.test(name, async (t) => {
    let caught: unknown;
    try {
      Sandbox.spawn({ seccomp: 'none', ...(options as SpawnOptions) });
    } catch (e) {
      caught = e;
    }
    t.type(caught, InvalidOptionError);
    const e = caught as InvalidOptionError;
    t.equal(e.code, 'ERR_INVALID_OPTION');
    t.equal(e.field, field);
    t.match(e.message, message);
  });
}
