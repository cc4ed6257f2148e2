/** `warden keygen NAME`: an Ed25519 signing key pair, or with --envelope a symmetric envelope key. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { generateEnvelopeKey, generateSigningKey, writeEnvelopeKeyFile, writeSigningKeyFiles } from '../trust/keys';
import { isValidKeyName } from '../trust/keys';
import { flag, parse, run, str, UsageError } from './trust-common';

const USAGE = `usage: warden keygen NAME [--dir DIR] [--envelope] [--force]

Writes DIR/NAME.key (secret, mode 0600) and DIR/NAME.pub (public) for signing trust lists,
or with --envelope DIR/NAME.envkey (secret, mode 0600) for encrypting them.
DIR defaults to $WARDEN_HOME/keys, or ~/.warden/keys.
  --force   replace existing key files
`;

export function defaultKeyDir(): string {
  const home = process.env.WARDEN_HOME ?? path.join(os.homedir(), '.warden');
  return path.join(home, 'keys');
}

export async function keygen(args: string[]): Promise<number> {
  return run('keygen', USAGE, args, async () => {
    const p = parse(args, { dir: { type: 'string' }, envelope: { type: 'boolean' }, force: { type: 'boolean' } }, { min: 1, max: 1, names: 'NAME' });
    const name = p.positionals[0];
    if (!isValidKeyName(name)) throw new UsageError(`NAME '${name}' must be 1-64 letters, digits, '.', '_' or '-'`);
    const dir = str(p, 'dir') ?? defaultKeyDir();
    await fs.promises.mkdir(dir, { recursive: true, mode: 0o700 });
    const force = flag(p, 'force');
    if (flag(p, 'envelope')) {
      const file = path.join(dir, `${name}.envkey`);
      if (!force && fs.existsSync(file)) throw new UsageError(`${file} already exists; choose another NAME or pass --force`);
      const k = await generateEnvelopeKey(name);
      await writeEnvelopeKeyFile(k, file, force);
      process.stdout.write(`envelope key ${k.keyId}\n  secret: ${file}\n`);
      return 0;
    }
    const secret = path.join(dir, `${name}.key`);
    const pub = path.join(dir, `${name}.pub`);
    // Check both first so that a refusal never leaves one half of a pair behind.
    for (const f of [secret, pub]) {
      if (!force && fs.existsSync(f)) throw new UsageError(`${f} already exists; choose another NAME or pass --force`);
    }
    const k = await generateSigningKey(name);
    await writeSigningKeyFiles(k, secret, pub, force);
    process.stdout.write(`signing key ${k.keyId}\n  secret: ${secret}\n  public: ${pub}\n`);
    return 0;
  });
}
