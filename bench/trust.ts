/**
 * npm run bench:trust — verifying a 500-entry trust list and digesting a 10 MB plugin directory.
 * Peers measured in the same run give the floor each figure is made of: JSON.parse of the same
 * text, one Ed25519 verification, SHA3-512 of the same bytes already in memory.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import {
  addEntry, createTrustList, digestDirectory, generateSigningKey, serializeTrustList, signTrustList, signedBytes,
  verifyTrustList, TrustListDocument,
} from '../lib';
import { getSodium } from '../lib/trust/sodium';

async function timeit(runs: number, fn: () => unknown): Promise<{ median: number; min: number }> {
  const samples: number[] = [];
  await fn(); // warm-up
  for (let i = 0; i < runs; i++) {
    const t0 = process.hrtime.bigint();
    await fn();
    samples.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(samples.length / 2)], min: samples[0] };
}

async function main(): Promise<void> {
  const keys = [await generateSigningKey('bench0'), await generateSigningKey('bench1'), await generateSigningKey('bench2')];
  let doc: TrustListDocument = createTrustList({ keys, threshold: 2, expires: new Date(Date.now() + 86400_000) });
  for (let i = 0; i < 500; i++) {
    doc = addEntry(doc, {
      name: `plugin-${String(i).padStart(3, '0')}`, version: '1.0.0', digest: `sha3-512:${randomBytes(64).toString('hex')}`,
      publisher: 'bench', trust: 'standard', permissions: ['net.connect', 'fs.read'], limits: { memoryBytes: 268435456, pids: 32 },
    });
  }
  for (const k of keys.slice(0, 2)) doc = await signTrustList(doc, k);
  const text = serializeTrustList(doc);
  const anchor = { keys, threshold: 2 };
  const sodium = await getSodium();
  const msg = signedBytes(doc.signed);
  const sig = new Uint8Array(Buffer.from(doc.signatures[0].sig, 'base64'));

  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'warden-bench-'));
  const all: Buffer[] = [];
  for (let d = 0; d < 10; d++) {
    fs.mkdirSync(path.join(root, `d${d}`));
    for (let f = 0; f < 10; f++) {
      const b = randomBytes(100 * 1024);
      all.push(b);
      fs.writeFileSync(path.join(root, `d${d}`, `f${f}.js`), b);
    }
  }
  // Top up to exactly 10 MiB with one larger file.
  fs.writeFileSync(path.join(root, "big.bin"), randomBytes(10 * 1024 * 1024 - all.length * 100 * 1024));
  all.push(fs.readFileSync(path.join(root, 'big.bin')));
  const bytes = Buffer.concat(all);

  const rows: [string, { median: number; min: number }][] = [
    [`verify 500-entry list (${(text.length / 1024).toFixed(0)} KB, 2-of-3 Ed25519)`, await timeit(30, () => verifyTrustList(text, { anchor }))],
    ['  peer: JSON.parse of the same text', await timeit(30, () => JSON.parse(text))],
    ['  peer: one Ed25519 verify of the signed bytes', await timeit(30, () => sodium.crypto_sign_verify_detached(sig, msg, keys[0].publicKey))],
    [`digest plugin dir (${(bytes.length / 1048576).toFixed(1)} MB, 111 files)`, await timeit(10, () => digestDirectory(root))],
    ['  peer: SHA3-512 of the same bytes in memory', await timeit(10, () => createHash('sha3-512').update(bytes).digest())],
    ['  peer: SHA-256 of the same bytes in memory', await timeit(10, () => createHash('sha256').update(bytes).digest())],
  ];
  fs.rmSync(root, { recursive: true, force: true });

  const out = ['| operation | median ms | min ms |', '|---|---:|---:|'];
  for (const [name, r] of rows) out.push(`| ${name} | ${r.median.toFixed(2)} | ${r.min.toFixed(2)} |`);
  process.stdout.write(`${out.join('\n')}\n\nnode ${process.version}, ${os.cpus()[0]?.model ?? 'unknown cpu'}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
  process.exitCode = 1;
});
