/** Semver compatibility: host API range and dependencies, each failure naming the range. */
import t from 'tap';
import { assertCompatible, checkManifest, compatibilityProblems } from '../lib';

const host = { hostApiVersion: '1.4.2', loaded: { db: '2.3.0', cache: '0.9.1' } };

t.test('compatible manifest passes', async (t) => {
  const m = assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^1.2.0', dependencies: { db: '^2.0.0' } }, host);
  t.equal(m.name, 'web');
  t.same(compatibilityProblems({ name: 'web', version: '1.0.0', hostApi: '>=1.0.0 <2' }, host), []);
});

t.test('an incompatible host range: ERR_COMPAT_HOST_RANGE naming the range', async (t) => {
  t.throws(() => assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^2.0.0' }, host), {
    code: 'ERR_COMPAT_HOST_RANGE', plugin: 'web', range: '^2.0.0', hostVersion: '1.4.2',
  });
  // A prerelease host does not satisfy a plain range.
  t.throws(() => assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^1.0.0' }, { ...host, hostApiVersion: '1.5.0-beta.1' }), {
    code: 'ERR_COMPAT_HOST_RANGE',
  });
});

t.test('a missing dependency plugin: ERR_COMPAT_MISSING_DEPENDENCY naming it and its range', async (t) => {
  t.throws(() => assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^1.0.0', dependencies: { auth: '~3.1.0' } }, host), {
    code: 'ERR_COMPAT_MISSING_DEPENDENCY', dependency: 'auth', range: '~3.1.0',
  });
  // Inherited object keys are not "loaded plugins".
  t.throws(() => assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^1.0.0', dependencies: { constructor: '*' } }, host), {
    code: 'ERR_COMPAT_MISSING_DEPENDENCY', dependency: 'constructor',
  });
});

t.test('a dependency loaded at a version outside the range: ERR_COMPAT_DEPENDENCY_RANGE', async (t) => {
  const loaded = new Map([['db', '3.0.0']]);
  t.throws(() => assertCompatible({ name: 'web', version: '1.0.0', hostApi: '^1.0.0', dependencies: { db: '^2.0.0' } }, { hostApiVersion: '1.0.0', loaded }), {
    code: 'ERR_COMPAT_DEPENDENCY_RANGE', dependency: 'db', range: '^2.0.0', found: '3.0.0',
  });
});

t.test('all problems are reported, host range first', async (t) => {
  const problems = compatibilityProblems({ name: 'web', version: '1.0.0', hostApi: '^3.0.0', dependencies: { db: '^1.0.0', auth: '1' } }, host);
  t.same(problems.map((p) => p.code), ['ERR_COMPAT_HOST_RANGE', 'ERR_COMPAT_DEPENDENCY_RANGE', 'ERR_COMPAT_MISSING_DEPENDENCY']);
});

t.test('bad manifests: ERR_COMPAT_MANIFEST naming the field', async (t) => {
  t.throws(() => checkManifest({ name: 'web', version: '1.0', hostApi: '^1' }), { code: 'ERR_COMPAT_MANIFEST', field: 'version' });
  t.throws(() => checkManifest({ name: 'web', version: '1.0.0', hostApi: 'not a range!' }), { code: 'ERR_COMPAT_MANIFEST', field: 'hostApi' });
  t.throws(() => checkManifest({ name: 'web', version: '1.0.0', hostApi: '^1', dependencies: { db: 42 } }), { code: 'ERR_COMPAT_MANIFEST', field: 'dependencies.db' });
  t.throws(() => checkManifest({ name: 'Web App', version: '1.0.0', hostApi: '^1' }), { code: 'ERR_COMPAT_MANIFEST', field: 'name' });
  t.throws(() => checkManifest(null), { code: 'ERR_COMPAT_MANIFEST' });
});
