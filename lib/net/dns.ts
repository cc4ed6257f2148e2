/**
 * The little of DNS the sandbox's stub needs: read a query's question, write an answer with A/AAAA
 * records, NODATA, NXDOMAIN or FORMERR. Names are compared in lower case without the final dot.
 */
export const TYPE_A = 1;
export const TYPE_AAAA = 28;
export const RCODE_FORMERR = 1;
export const RCODE_NXDOMAIN = 3;
export const RCODE_REFUSED = 5;

export interface DnsQuestion {
  id: number;
  /** Recursion desired, copied into the answer. */
  rd: boolean;
  name: string;
  type: number;
  cls: number;
  /** The raw question section, echoed in the answer. */
  raw: Buffer;
}

/** The question of a standard query, or null when the packet is not one (answered FORMERR if it has an id). */
export function parseQuery(buf: Buffer): DnsQuestion | null {
  if (buf.length < 12 || buf.length > 1500) return null;
  const flags = buf.readUInt16BE(2);
  if ((flags & 0x8000) !== 0 || ((flags >> 11) & 0xf) !== 0) return null; // a response, or not QUERY
  if (buf.readUInt16BE(4) !== 1) return null;
  let off = 12;
  const labels: string[] = [];
  for (;;) {
    if (off >= buf.length) return null;
    const len = buf[off]!;
    off += 1;
    if (len === 0) break;
    if (len > 63 || off + len > buf.length) return null; // no compression in a question
    const label = buf.subarray(off, off + len).toString('latin1');
    if (!/^[A-Za-z0-9_-]+$/.test(label)) return null;
    labels.push(label.toLowerCase());
    off += len;
  }
  if (off + 4 > buf.length || labels.join('.').length > 253) return null;
  const type = buf.readUInt16BE(off);
  const cls = buf.readUInt16BE(off + 2);
  return { id: buf.readUInt16BE(0), rd: (flags & 0x0100) !== 0, name: labels.join('.'), type, cls, raw: buf.subarray(12, off + 4) };
}

/** An answer to `q`: `rcode`, and records of q.type with the given rdata (4 or 16 bytes each). */
export function buildAnswer(q: DnsQuestion, rcode: number, rdatas: readonly Buffer[] = [], ttl = 30): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(q.id, 0);
  header.writeUInt16BE(0x8000 | (q.rd ? 0x0100 : 0) | 0x0080 | (rcode & 0xf), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(rdatas.length, 6);
  const records = rdatas.map((rd) => {
    const rr = Buffer.alloc(12 + rd.length);
    rr.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    rr.writeUInt16BE(q.type, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(ttl, 6);
    rr.writeUInt16BE(rd.length, 10);
    rd.copy(rr, 12);
    return rr;
  });
  return Buffer.concat([header, q.raw, ...records]);
}

/** The FORMERR answer for a packet that has at least an id. */
export function formErr(buf: Buffer): Buffer | null {
  if (buf.length < 12) return null;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(buf.readUInt16BE(0), 0);
  header.writeUInt16BE(0x8000 | RCODE_FORMERR, 2);
  return header;
}
