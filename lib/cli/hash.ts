/** `warden hash DIR`: the SHA3-512 digest of a plugin directory, as trust lists record it. */
import { digestDirectory } from '../trust/digest';
import { parse, run } from './trust-common';

const USAGE = `usage: warden hash DIR

Prints the digest (sha3-512:...) of the plugin directory DIR: paths, modes and contents.
Refuses symlinks leaving DIR, devices, fifos and sockets.
`;

export async function hash(args: string[]): Promise<number> {
  return run('hash', USAGE, args, async () => {
    const p = parse(args, {}, { min: 1, max: 1, names: 'DIR' });
    process.stdout.write(`${await digestDirectory(p.positionals[0])}\n`);
    return 0;
  });
}
