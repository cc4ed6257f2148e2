/**
 * The `warden` command. Each subcommand lives in its own file and is registered in COMMANDS.
 * A command returns its exit code; it writes its own errors to stderr.
 */

import { runCommand } from './run';
import { doctorCommand } from './doctor';
import { keygen } from './keygen';
import { hash } from './hash';
import { trust } from './trust';
import { audit } from './audit';
import { top } from './top';
import { scanCommand } from './scan';
import { install } from './install';

export type Command = (args: string[]) => Promise<number>;

interface CommandEntry {
  run: Command;
  summary: string;
}

const COMMANDS: Record<string, CommandEntry> = {
  run: { run: runCommand, summary: 'run a command in a sandbox: warden run [options] -- CMD [ARGS...]' },
  doctor: { run: doctorCommand, summary: 'what this host offers and what warden will degrade or refuse' },
  keygen: { run: keygen, summary: 'create a signing key pair (or --envelope key) for trust lists' },
  scan: { run: scanCommand, summary: 'what a plugin\'s code reaches (built-ins, globals, addons, install scripts) against its requested permissions' },
  hash: { run: hash, summary: 'print the SHA3-512 digest of a plugin directory' },
  trust: { run: trust, summary: 'create, edit, sign, verify, show, encrypt and decrypt trust lists; reset-state' },
  audit: { run: audit, summary: 'show, filter and verify an audit log (--file or $WARDEN_AUDIT_LOG)' },
  install: { run: install, summary: "install a plugin's npm dependencies in a sandbox (scripts off, registry only): warden install SPEC --into DIR" },
  top: { run: top, summary: "a running host's plugins, live, from its dashboard: warden top --url URL --token T" },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(10)} ${c.summary}`);
  return `usage: warden <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n'warden <command> --help' for the options of one command.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`warden: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  return command.run(rest);
}
