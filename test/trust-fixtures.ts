/** Shared fixtures for the trust tests: temporary directories, plugins and signed lists. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  addEntry, createTrustList, digestDirectory, generateSigningKey, serializeTrustList, signTrustList, SigningKey,
  TrustListDocument,
} from '../lib';

export function tmpdir(prefix = 'warden-trust-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function makePlugin(root: string, name: string, files: Record<string, string> = {}): string {
  const dir = path.join(root, name);
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'warden.json'), JSON.stringify({ name, version: '1.0.0', hostApi: '^1.0.0', entry: 'lib/index.js' }));
  fs.writeFileSync(path.join(dir, 'lib', 'index.js'), `module.exports = ${JSON.stringify(name)};\n`);
  for (const [rel, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), content);
  return dir;
}

export const DAY = 24 * 3600 * 1000;

export async function keys(n: number, prefix = 'k'): Promise<SigningKey[]> {
  const out: SigningKey[] = [];
  for (let i = 0; i < n; i++) out.push(await generateSigningKey(`${prefix}${i}`));
  return out;
}

/** A list declaring `declared` with `threshold`, holding entries for `plugins` (name → dir), signed by `signers`. */
export async function signedList(opts: {
  declared: SigningKey[];
  threshold: number;
  signers: SigningKey[];
  plugins?: Record<string, string>;
  version?: number;
  expires?: Date;
}): Promise<{ doc: TrustListDocument; text: string }> {
  let doc = createTrustList({
    keys: opts.declared,
    threshold: opts.threshold,
    expires: opts.expires ?? new Date(Date.now() + 30 * DAY),
    version: opts.version ?? 1,
  });
  for (const [name, dir] of Object.entries(opts.plugins ?? {})) {
    doc = addEntry(doc, {
      name, version: '1.0.0', digest: await digestDirectory(dir), publisher: 'acme', trust: 'standard',
      permissions: ['net.connect'], limits: { pids: 16 },
    });
  }
  for (const k of opts.signers) doc = await signTrustList(doc, k);
  return { doc, text: serializeTrustList(doc) };
}
