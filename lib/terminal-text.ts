/**
 * Text that came from outside (a plugin, a log line, a file name in a scanned tree, a remote
 * dashboard's JSON) made safe to print on a terminal. C0 and C1 controls, DEL, the line and
 * paragraph separators and the bidirectional marks, embeddings, overrides and isolates are shown as
 * `\uNNNN`: such a string cannot move the cursor, recolour or retitle the terminal, hide what
 * follows it or reorder what is shown. `\uNNNN` rather than `\xNN` so that escaped JSON stays JSON.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]/g;

export function terminalSafe(s: string): string {
  return s.replace(UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
