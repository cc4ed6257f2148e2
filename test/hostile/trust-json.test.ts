/**
 * Duplicate keys in signed documents. JSON.parse keeps the last of two equal keys, so a list file
 * can show a reviewer (or another tool, which may keep the first) one thing while warden enforces
 * another, and the signature still verifies: it covers what warden parsed. Every document the trust
 * layer reads is scanned first and refused with ERR_TRUST_MALFORMED when an object has a key twice,
 * whatever escapes spell it. The scanner is also checked against JSON.parse on nasty and random input.
 */
import t, { Test } from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';

import {
  encryptEnvelope, generateEnvelopeKey, loadPublicKey, parseJsonBounded, readTrustState, TrustStore, writeSigningKeyFiles,
  generateSigningKey,
} from '../../lib/trust';
import { PluginWorld } from '../helpers/plugins';
import { tmpdir } from '../trust-fixtures';

const HOOKS = [{ name: 'who', mode: 'first' as const }];
const MAX = 8 * 1024 * 1024;
const parse = (s: string, maxDepth?: number) => parseJsonBounded(s, { maxBytes: MAX, maxDepth });
/** A test name for any text: ASCII only (a raw U+2028 would break the TAP stream). */
const named = (s: string) => JSON.stringify(s).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

async function listedWorld(t: Test): Promise<PluginWorld> {
  const w = await PluginWorld.create();
  t.teardown(() => w.cleanup());
  w.writePlugin('alpha', { code: `exports.activate = (host) => { host.hook('who', () => 'alpha'); };`, hooks: ['who'] });
  await w.trust('alpha', { trust: 'standard' });
  await w.publish();
  return w;
}

t.test('a signed list with a duplicate key is refused by a real host, however the key is spelled', async (t) => {
  const variants: Record<string, (text: string) => string> = {
    'plain': (s) => s.replace('"trust": "standard"', '"trust": "privileged", "trust": "standard"'),
    'escaped': (s) => s.replace('"trust": "standard"', '"\\u0074rust": "privileged", "trust": "standard"'),
    'the whole signed part twice': (s) => {
      const doc = JSON.parse(s) as { signed: { entries: unknown[] }; signatures: unknown };
      const shown = { ...doc.signed, entries: [] };
      return `{"signed": ${JSON.stringify(shown)}, "signed": ${JSON.stringify(doc.signed)}, "signatures": ${JSON.stringify(doc.signatures)}}`;
    },
  };
  for (const [what, edit] of Object.entries(variants)) {
    await t.test(what, async (t) => {
      const w = await listedWorld(t);
      const text = edit(fs.readFileSync(w.trustFile, 'utf8'));
      t.not(text, fs.readFileSync(w.trustFile, 'utf8'));
      // JSON.parse takes the last of each pair, i.e. exactly what was signed: the signature verifies.
      t.same(JSON.parse(text), JSON.parse(fs.readFileSync(w.trustFile, 'utf8')), 'JSON.parse sees the signed document');
      fs.writeFileSync(w.trustFile, text);
      const host = w.host({ hooks: HOOKS });
      t.teardown(() => host.close());
      await t.rejects(host.start(), { code: 'ERR_TRUST_MALFORMED', message: /duplicate key/ });
      t.same(host.plugins(), [], 'nothing was loaded');
    });
  }
});

t.test('duplicate keys in an envelope, a state file and a key file are refused too', async (t) => {
  const w = await listedWorld(t);
  const key = await generateEnvelopeKey('env');
  const env = JSON.parse(await encryptEnvelope(fs.readFileSync(w.trustFile), key)) as Record<string, string>;
  const envText = `{"type":"${env.type}","alg":"${env.alg}","keyId":"${env.keyId}","nonce":"${env.nonce}","ciphertext":"AAAA","ciphertext":"${env.ciphertext}"}`;
  const store = w.store({ envelopeKey: key });
  await t.rejects(store.loadBytes(envText), { code: 'ERR_TRUST_MALFORMED', where: '$.ciphertext' });
  await store.loadBytes(JSON.stringify(env));
  t.pass('the same envelope without the duplicate opens');

  const state = fs.readFileSync(w.statePath, 'utf8');
  fs.writeFileSync(w.statePath, state.replace('"version": 1,', '"version": 9, "version": 1,'));
  await t.rejects(readTrustState(w.statePath), { code: 'ERR_TRUST_STATE', message: /duplicate key "version"/ });
  await t.rejects(new TrustStore({ anchor: { keys: [], threshold: 1 }, statePath: w.statePath }).loadBytes(fs.readFileSync(w.trustFile)), { code: 'ERR_TRUST_STATE' });

  const dir = tmpdir();
  const k = await generateSigningKey('pub');
  const publicFile = path.join(dir, 'k.pub');
  await writeSigningKeyFiles(k, path.join(dir, 'k.key'), publicFile);
  const pub = fs.readFileSync(publicFile, 'utf8');
  fs.writeFileSync(publicFile, pub.replace('{', '{"name": "someone else",'));
  await t.rejects(loadPublicKey(publicFile), { code: /^ERR_TRUST_/, message: /duplicate key "name"/ });
});

t.test('the scanner on nasty inputs', async (t) => {
  const dup: Array<[string, string]> = [
    ['{"a":1,"a":2}', '$.a'],
    ['{"a":1,"\\u0061":2}', '$.a'],
    ['{"\\u0061":1,"\\u0061":2}', '$.a'],
    ['{"/":1,"\\/":2}', '$./'],
    ['{"é":1,"\\u00E9":2}', '$.é'],
    ['{"😀":1,"\\ud83d\\ude00":2}', '$.😀'],
    ['{"\\uD83D\\uDE00":1,"\\ud83d\\ude00":2}', '$.😀'],
    ['{"__proto__":1,"__proto__":2}', '$.__proto__'],
    ['{"constructor":{},"constructor":[]}', '$.constructor'],
    ['{"":1,"":2}', '$.'],
    ['{"a\\"":1,"a\\"":2}', '$.a"'],
    ['{"x":{"y":[{"z":1,"z":1}]}}', '$.x.y[0].z'],
    ['[{}, {"k":1}, {"k":1,"j":2,"k":3}]', '$[2].k'],
  ];
  for (const [text, where] of dup) {
    t.same(Object.keys(JSON.parse(text) as object).length > 0 || Array.isArray(JSON.parse(text)), true);
    t.throws(() => parse(text), { code: 'ERR_TRUST_MALFORMED', where, message: /duplicate key/ }, `${named(text)} refused at ${named(where)}`);
  }
  const fine = [
    '{"a":1,"A":2}',
    '{"a":{"a":{"a":1}}}',
    '[{"a":1},{"a":1}]',
    '{"a":"b","b":"a"}',
    '{"x":"\\"a\\":1","a":1}',
    '{"a\\\\":1,"a\\\\\\\\":2}',
    '{"\\ud83d":1,"\\ude00":2,"\\ud83d\\ude00":3}',
    '{"a":1, "b":{"a":2}, "c":[{"a":3}]}',
  ];
  for (const text of fine) t.same(parse(text), JSON.parse(text), `${named(text)} parses as JSON.parse does`);

  // Depth is still bounded, and brackets inside strings do not count.
  t.throws(() => parse('['.repeat(33) + ']'.repeat(33)), { code: 'ERR_TRUST_MALFORMED', message: /nested deeper than 32/ });
  t.same(parse('['.repeat(32) + ']'.repeat(32)), JSON.parse('['.repeat(32) + ']'.repeat(32)));
  t.same(parse('{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{"}'), { a: '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[{{{{{' });
  t.throws(() => parse('{"a":1}', 0), { message: /nested deeper than 0/ });

  // Everything JSON.parse refuses, the scanner refuses; what it accepts (without duplicates), the scanner accepts.
  const cases = [
    '', ' ', '1', '-0', '01', '1.', '.5', '1e5', '1E+5', '1e', '-', '--1', '-01', '0.0e-0', 'true', 'tru', 'nul', 'null ', ' null',
    '[1,]', '[,1]', '[]', '{}', '{,}', '{"a":1,}', '{"a" 1}', '{"a":}', '{1:1}', '{"a":1 "b":2}', '"\t"', '"\u2028"', '"\\x"',
    '"\\u12G4"', '"\\u123"', '"abc', '[1 2]', '[[[]]]', '{"a":[{"b":{}}]}', '"\\""', '[1]x', '\u00a0[]', '\ufeff{}', '[1e-0]',
    '[-0.0e+00]', 'Infinity', 'NaN', '[0x10]', "['a']", '[true,false,null]', '"\\', '"\\u', '{"a":1}}', '[1]]', '{"a":1]', '[1}',
    '{"a"', '{"a":', '[', '{', '"\u0000"', '"\u001f"', '"\u007f"', '\n\r\t 1 \n', '1 2', '+1', '1e+', '[.1]', '[1.e1]',
  ];
  for (const text of cases) {
    let expected: unknown;
    try {
      expected = JSON.parse(text);
    } catch {
      t.throws(() => parse(text), { code: 'ERR_TRUST_MALFORMED' }, `refused like JSON.parse: ${named(text)}`);
      continue;
    }
    t.same(parse(text), expected, `accepted like JSON.parse: ${named(text)}`);
  }
});

/** Random JSON, written with keys that repeat and escapes that hide it; the expected verdict is known. */
function randomDoc(rand: () => number): { text: string; dup: boolean } {
  const KEYS = ['a', 'b', 'é', '😀', '__proto__', '', 'a"', 'x\\'];
  const spell = (k: string): string => {
    if (rand() < 0.5) return JSON.stringify(k);
    let out = '"';
    for (let i = 0; i < k.length; i++) out += `\\u${k.charCodeAt(i).toString(16).padStart(4, '0')}`;
    return `${out}"`;
  };
  let dup = false;
  const value = (depth: number): string => {
    const r = rand();
    if (depth > 6 || r < 0.3) return [() => '1', () => '-2.5e3', () => '"s\\n"', () => 'true', () => 'null'][Math.floor(rand() * 5)]!();
    if (r < 0.55) return `[${Array.from({ length: Math.floor(rand() * 4) }, () => value(depth + 1)).join(',')}]`;
    const keys = Array.from({ length: Math.floor(rand() * 5) }, () => KEYS[Math.floor(rand() * KEYS.length)]!);
    if (new Set(keys).size !== keys.length) dup = true;
    return `{${keys.map((k) => `${spell(k)} : ${value(depth + 1)}`).join(' ,')}}`;
  };
  const text = value(0);
  return { text, dup };
}

t.test('the scanner against JSON.parse on random documents with hidden duplicates', async (t) => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  let dups = 0;
  let wrong = 0;
  for (let i = 0; i < 3000; i++) {
    const { text, dup } = randomDoc(rand);
    let got: string;
    try {
      const v = parse(text);
      got = JSON.stringify(v) === JSON.stringify(JSON.parse(text)) ? 'same' : 'different';
    } catch (e) {
      got = /duplicate key/.test((e as Error).message) ? 'dup' : `error ${(e as Error).message}`;
    }
    const want = dup ? 'dup' : 'same';
    if (dup) dups++;
    if (got !== want) {
      wrong++;
      if (wrong < 5) t.fail(`${named(text)}: ${got}, expected ${want}`);
    }
  }
  t.equal(wrong, 0, 'every verdict right');
  t.ok(dups > 300, `duplicates were among the inputs (${dups})`);
});

t.test('a document near the size limit: scanned whole, a duplicate at its very end found', async (t) => {
  const items: string[] = [];
  for (let i = 0; i < 60000; i++) items.push(`{"name":"p${i}","version":"1.0.${i}","digest":"${'ab'.repeat(40)}"}`);
  const body = `[${items.join(',')}]`;
  t.ok(body.length > 6_000_000 && body.length < MAX, `${body.length} bytes`);
  t.equal((parse(body) as unknown[]).length, 60000);
  const withDup = `${body.slice(0, -2)},"name":"again"}]`;
  t.throws(() => parse(withDup), { code: 'ERR_TRUST_MALFORMED', where: '$[59999].name' });
  // One object with many distinct keys, then one repeated.
  const many = `{${Array.from({ length: 100000 }, (_, i) => `"k${i}":${i}`).join(',')}}`;
  t.equal(Object.keys(parse(many) as object).length, 100000);
  t.throws(() => parse(`${many.slice(0, -1)},"\\u006b0":0}`), { code: 'ERR_TRUST_MALFORMED', where: '$.k0' });
});
