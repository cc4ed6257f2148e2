/**
 * TrustStore: what a host uses. It reads a trust list file (bounded), opens the envelope if the file
 * is one, verifies it against the current anchor, and records the accepted version in the state file.
 *
 * The anchor is the host's pinned keys until a list has been accepted; from then on it is the key
 * set the last accepted list declared (so a verified rotation sticks). To start over with new pins,
 * the operator removes the state file deliberately.
 */
import { JsonValue, parseJsonBounded } from './canonical';
import { checkDocument } from './document';
import { decryptEnvelope, isEnvelope } from './envelope';
import { MalformedError } from './errors';
import { DEFAULT_MAX_BYTES, readBounded } from './io';
import { EnvelopeKey } from './keys';
import { readTrustState, writeTrustState } from './state';
import { TrustAnchor, VerifiedTrustList, verifyTrustDocument } from './verify';

export interface TrustStoreOptions {
  anchor: TrustAnchor;
  /** Where the highest accepted version is kept. The host must own this file. */
  statePath: string;
  /** Needed to read encrypted lists; without it an envelope is refused. */
  envelopeKey?: EnvelopeKey;
  maxBytes?: number;
  /** Clock, for tests. */
  now?: () => Date;
}

export class TrustStore {
  private readonly opts: TrustStoreOptions;

  constructor(opts: TrustStoreOptions) {
    this.opts = opts;
  }

  async load(file: string): Promise<VerifiedTrustList> {
    const maxBytes = this.opts.maxBytes ?? DEFAULT_MAX_BYTES;
    return this.loadBytes(await readBounded(file, maxBytes), file);
  }

  async loadBytes(input: string | Uint8Array, file?: string): Promise<VerifiedTrustList> {
    const maxBytes = this.opts.maxBytes ?? DEFAULT_MAX_BYTES;
    let raw: JsonValue = parseJsonBounded(input, { maxBytes, file });
    if (isEnvelope(raw)) {
      if (this.opts.envelopeKey === undefined) throw new MalformedError('$', 'the list is encrypted and no envelope key was given', file);
      raw = parseJsonBounded(await decryptEnvelope(raw, this.opts.envelopeKey, { file }), { maxBytes, file });
    }
    let doc;
    try {
      doc = checkDocument(raw);
    } catch (e) {
      if (e instanceof MalformedError && file !== undefined) throw new MalformedError(e.where, e.message.replace(/^[^:]*: /, ''), file);
      throw e;
    }
    const state = await readTrustState(this.opts.statePath);
    const now = this.opts.now?.() ?? new Date();
    const list = await verifyTrustDocument(doc, {
      anchor: state?.keys ?? this.opts.anchor,
      accepted: state,
      now,
    });
    if (state === undefined || list.version !== state.version || list.rotated) await writeTrustState(this.opts.statePath, list, now);
    return list;
  }
}
