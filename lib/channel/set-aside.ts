/**
 * Messages a peer sent while a callSync waited for its answer: kept in order, to be handled after
 * it returns. A list walked by an index (shift() copies the list: quadratic in its length, 7.5 s
 * for 400,000 messages), and their size counted with what each costs beyond its bytes.
 */

/** What keeping one message costs beyond its bytes (its Buffer object, the list's slot). */
const ENTRY_BYTES = 128;
const EMPTY = Buffer.alloc(0);

export class SetAside {
  private list: Buffer[] = [];
  private head = 0;
  /** The messages' bytes, ENTRY_BYTES more for each. */
  bytes = 0;

  get empty(): boolean {
    return this.head === this.list.length;
  }

  push(m: Buffer): void {
    this.list.push(m);
    this.bytes += m.length + ENTRY_BYTES;
  }

  /** The oldest message (the list must not be empty). */
  take(): Buffer {
    const m = this.list[this.head];
    this.list[this.head++] = EMPTY;
    this.bytes -= m.length + ENTRY_BYTES;
    if (this.head === this.list.length) this.clear();
    return m;
  }

  clear(): void {
    this.list = [];
    this.head = 0;
    this.bytes = 0;
  }
}
