/**
 * File I/O with the two properties the trust layer needs: reads are bounded (a huge or endless input
 * is refused before it is buffered) and writes are atomic (a crash leaves the old file or the new one,
 * never half of one).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { MalformedError } from './errors';

/** Default cap for trust lists, envelopes, key and state files. 500 entries take about 250 KB. */
export const DEFAULT_MAX_BYTES = 8 * 1024 * 1024;

/**
 * Reads a regular file of at most `maxBytes`. Refuses anything else (a fifo or /dev/zero would never end)
 * and refuses by size before reading, so a 10 GB file costs one fstat.
 */
export async function readBounded(file: string, maxBytes: number = DEFAULT_MAX_BYTES, opts: { noFollow?: boolean } = {}): Promise<Buffer> {
  // noFollow: a symlink as the last component fails with ELOOP instead of being followed.
  const flags = fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (opts.noFollow === true ? fs.constants.O_NOFOLLOW : 0);
  const fh = await fs.promises.open(file, flags);
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new MalformedError('$', 'not a regular file', file);
    if (st.size > maxBytes) throw new MalformedError('$', `file is ${st.size} bytes, the limit is ${maxBytes}`, file);
    // Read one byte past the cap: the file may have grown since fstat.
    const buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let off = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, off);
      if (bytesRead === 0) break;
      off += bytesRead;
      if (off === buf.length) {
        if (off > maxBytes) throw new MalformedError('$', `file is larger than the limit of ${maxBytes} bytes`, file);
        break;
      }
    }
    return buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}

/**
 * Writes `data` to `file` atomically: a temporary file in the same directory (same filesystem, so
 * rename is atomic), created with its final mode (a secret key is never briefly world-readable),
 * fsynced, renamed over the target, then the directory fsynced so the rename itself survives a crash.
 */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  opts: { mode?: number; overwrite?: boolean } = {},
): Promise<void> {
  const dir = path.dirname(path.resolve(file));
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const mode = opts.mode ?? 0o644;
  const fh = await fs.promises.open(tmp, 'wx', mode);
  let renamed = false;
  try {
    try {
      await fh.writeFile(data);
      // The umask may have narrowed the mode; make it exactly what was asked.
      await fh.chmod(mode);
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (opts.overwrite === false) {
      // link() fails if the target exists, unlike rename(): no race between a check and the write.
      await fs.promises.link(tmp, file);
      await fs.promises.unlink(tmp);
    } else {
      await fs.promises.rename(tmp, file);
    }
    renamed = true;
    const dh = await fs.promises.open(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  } finally {
    if (!renamed) await fs.promises.rm(tmp, { force: true });
  }
}
