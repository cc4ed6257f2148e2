/**
 * Parsing of the human forms of limits: sizes (`256M`), durations (`10s`), cpu fractions (`0.5`).
 * Numbers are taken as they are (bytes, milliseconds, cores). Every failure is an InvalidOptionError
 * naming the field, so `warden run --memory 12X` says which flag is wrong.
 */
import { InvalidOptionError } from '../errors';

// Binary multiples: `256M` means what `docker run -m 256m` and systemd's MemoryMax=256M mean.
const SIZE_UNITS: Record<string, number> = {
  '': 1, b: 1,
  k: 1024, kb: 1024, kib: 1024,
  m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3,
  t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4,
};

const DURATION_UNITS: Record<string, number> = {
  ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3_600_000,
};

/** Bytes from `256M`, `1.5G`, `4096`, or a number of bytes. Must be a positive whole number of bytes. */
export function parseSize(field: string, value: string | number): number {
  let bytes: number;
  if (typeof value === 'number') {
    bytes = value;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) {
      throw new InvalidOptionError(field, `'${value}' is not a size; use bytes or a number with K, M, G or T (e.g. 256M)`);
    }
    bytes = Math.floor(Number(m[1]) * unit);
  }
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new InvalidOptionError(field, `must be a positive whole number of bytes, got ${String(value)}`);
  }
  return bytes;
}

/** Milliseconds from `10s`, `500ms`, `2m`, `1h`, `1.5s`, or a number of milliseconds. */
export function parseDuration(field: string, value: string | number): number {
  let ms: number;
  if (typeof value === 'number') {
    ms = value;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
    // A bare number in a string is ambiguous on a command line; require the unit there.
    const unit = m && m[2] !== '' ? DURATION_UNITS[m[2]!.toLowerCase()] : undefined;
    if (!m || unit === undefined) {
      throw new InvalidOptionError(field, `'${value}' is not a duration; use a number with ms, s, m or h (e.g. 10s)`);
    }
    ms = Number(m[1]) * unit;
  }
  if (!Number.isFinite(ms) || ms <= 0) {
    throw new InvalidOptionError(field, `must be a positive duration, got ${String(value)}`);
  }
  // setTimeout cannot wait longer than 2^31-1 ms (it fires at once instead); refuse rather than misfire.
  if (ms > 2 ** 31 - 1) {
    throw new InvalidOptionError(field, `must be at most 24 days, got ${String(value)}`);
  }
  return ms;
}

/** Cores from `0.5`, `2`, `50%`, or a number. At least 1 ms of cpu per 100 ms period (0.01 core). */
export function parseCpu(field: string, value: string | number): number {
  let cores: number;
  if (typeof value === 'number') {
    cores = value;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(%?)\s*$/.exec(value);
    if (!m) throw new InvalidOptionError(field, `'${value}' is not a cpu amount; use cores (0.5, 2) or a percentage of one core (50%)`);
    cores = Number(m[1]) / (m[2] === '%' ? 100 : 1);
  }
  if (!Number.isFinite(cores) || cores < 0.01) {
    throw new InvalidOptionError(field, `must be at least 0.01 core, got ${String(value)}`);
  }
  return cores;
}

/** Positive integer count (pids). */
export function parseCount(field: string, value: string | number): number {
  const n = typeof value === 'number' ? value : /^\s*\d+\s*$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new InvalidOptionError(field, `must be a positive whole number, got ${String(value)}`);
  }
  return n;
}

/** `268435456` → `256M`, for messages. */
export function formatSize(bytes: number): string {
  for (const [unit, mult] of [['G', 1024 ** 3], ['M', 1024 ** 2], ['K', 1024]] as const) {
    if (bytes >= mult && bytes % mult === 0) return `${bytes / mult}${unit}`;
  }
  return `${bytes}B`;
}
