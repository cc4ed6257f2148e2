/** Helpers shared by the keygen, hash and trust commands: argument parsing and error reporting. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { WardenError } from '../errors';

/** A mistake in the command line itself. Exit code 2. */
export class UsageError extends Error {}

type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parse(args: string[], options: Options, positionals: { min: number; max: number; names: string }): Parsed {
  let r;
  try {
    r = parseArgs({ args, options: { ...options, help: { type: 'boolean', short: 'h' } }, allowPositionals: true, strict: true });
  } catch (e) {
    // parseArgs messages name the option ("Unknown option '--frob'"); keep them, drop the hint about '--'.
    throw new UsageError((e as Error).message.split('. To specify')[0]);
  }
  if (r.positionals.length < positionals.min) throw new UsageError(`missing argument: ${positionals.names}`);
  if (r.positionals.length > positionals.max) throw new UsageError(`unexpected argument '${r.positionals[positionals.max]}'`);
  return { values: r.values as Parsed['values'], positionals: r.positionals };
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

export function list(p: Parsed, name: string): string[] {
  const v = p.values[name];
  return Array.isArray(v) ? v : [];
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function positiveInt(value: string, option: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new UsageError(`${option} must be a positive integer, got '${value}'`);
  return Number(value);
}

/** "90d", "12h", "2w" from now, or an ISO date/time. */
export function parseWhen(value: string, option: string, now = new Date()): Date {
  const m = /^([1-9][0-9]{0,5})([hdw])$/.exec(value);
  if (m !== null) {
    const hours = Number(m[1]) * (m[2] === 'h' ? 1 : m[2] === 'd' ? 24 : 24 * 7);
    return new Date(now.getTime() + hours * 3600_000);
  }
  if (/^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2})?(\.\d+)?(Z|[+-]\d{2}:\d{2})?)?$/.test(value)) {
    const d = new Date(value);
    if (!Number.isNaN(d.getTime())) return d;
  }
  throw new UsageError(`${option} must be a duration like 90d, 12h, 2w or a date like 2030-01-31, got '${value}'`);
}

/** Runs a command body, turning errors into a message on stderr and an exit code. */
export async function run(command: string, usage: string, args: string[], body: () => Promise<number>): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(usage);
    return 0;
  }
  try {
    return await body();
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`warden ${command}: ${e.message}\nRun 'warden ${command.split(' ')[0]} --help' for usage.\n`);
      return 2;
    }
    if (e instanceof WardenError) {
      process.stderr.write(`warden ${command}: ${e.message} [${e.code}]\n`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === 'string' && typeof err.path === 'string') {
      process.stderr.write(`warden ${command}: ${err.path}: ${describeErrno(err.code)} [${err.code}]\n`);
      return 1;
    }
    throw e;
  }
}

function describeErrno(code: string): string {
  switch (code) {
    case 'ENOENT': return 'no such file or directory';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EEXIST': return 'already exists (use --force to replace it)';
    case 'ENOTDIR': return 'not a directory';
    case 'EISDIR': return 'is a directory';
    default: return code;
  }
}
