/**
 * TrustStore: what a host uses. It reads a trust list file (bounded), opens the envelope if the file
 * is one, verifies it against the current anchor, and records the accepted version in the state file.
 *
 * The anchor is the host's pinned keys until a list has been accepted; from then on it is the key
 * set the last accepted list declared (so a verified rotation sticks).
 *
 * The highest accepted version is never lowered quietly. The store keeps it in memory as well as in
 * the state file, and refuses a load when the file disappeared (ERR_TRUST_STATE_MISSING), records
 * less than the store accepted (ERR_TRUST_STATE_REPLACED) or is not a good state file
 * (ERR_TRUST_STATE). Starting over is an operator's act: `warden trust reset-state FILE` before the
 * host starts, or `startOver: true` for a host whose state file does not exist yet. Either way the
 * store emits 'start-over' (StartOverEvent) when it accepts a list without a previous version to
 * compare with; PluginHost writes it to the audit log at `critical`.
 */
import { EventEmitter } from 'node:events';
import { JsonValue, parseJsonBounded } from './canonical';
import { checkDocument, TrustListDocument } from './document';
import { decryptEnvelope, isEnvelope } from './envelope';
import { MalformedError, StateMissingError, StateReplacedError } from './errors';
import { DEFAULT_MAX_BYTES, readBounded } from './io';
import { EnvelopeKey } from './keys';
import { isResetState, readTrustState, StateRecord, TrustState, writeTrustState } from './state';
import { TrustAnchor, VerifiedTrustList, verifyTrustDocument } from './verify';

export interface TrustStoreOptions {
  anchor: TrustAnchor;
  /** Where the highest accepted version is kept. The host must own this file; it must exist (see startOver). */
  statePath: string;
  /** Needed to read encrypted lists; without it an envelope is refused. */
  envelopeKey?: EnvelopeKey;
  maxBytes?: number;
  /** Clock, for tests. */
  now?: () => Date;
  /**
   * When the state file does not exist, start over instead of refusing: accept a list signed by
   * the pinned keys whatever its version, and create the file. Applies only before this store has
   * read or written a state: a file that disappears later is always refused. Meant for a host's
   * first start; left on, it lets a deleted state file re-open rollbacks at every restart (each
   * one is audited at `critical`). Default false.
   */
  startOver?: boolean;
}

/** A list was accepted with no previous version to compare with. */
export interface StartOverEvent {
  /** 'option': the state file was missing and startOver was set; 'reset-state': the file held a reset record. */
  how: 'option' | 'reset-state';
  statePath: string;
  /** The version accepted. */
  version: number;
  /** reset-state: when and why the operator reset. */
  resetAt?: string;
  reason?: string;
}

export class TrustStore extends EventEmitter {
  private readonly opts: TrustStoreOptions;
  /** The last state this store read or wrote: what it will never go below. */
  private floor: TrustState | undefined;
  /** Loads run one at a time: each reads, checks and writes the state as one step. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(opts: TrustStoreOptions) {
    super();
    this.opts = opts;
  }

  /** The highest version this store accepted or found recorded, if any. */
  get highestAccepted(): number | undefined {
    return this.floor?.version;
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
    let doc: TrustListDocument;
    try {
      doc = checkDocument(raw);
    } catch (e) {
      if (e instanceof MalformedError && file !== undefined) throw new MalformedError(e.where, e.message.replace(/^[^:]*: /, ''), file);
      throw e;
    }
    const run = () => this.accept(doc);
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async accept(doc: TrustListDocument): Promise<VerifiedTrustList> {
    const statePath = this.opts.statePath;
    let record: StateRecord | undefined;
    try {
      record = await readTrustState(statePath);
    } catch (e) {
      if (!(e instanceof StateMissingError)) throw e;
      if (this.floor !== undefined) throw new StateMissingError(statePath, true);
      if (this.opts.startOver !== true) throw e;
      record = undefined;
    }
    let accepted: TrustState | undefined;
    let startOver: Omit<StartOverEvent, 'version'> | undefined;
    if (record === undefined) {
      startOver = { how: 'option', statePath };
    } else if (isResetState(record)) {
      if (this.floor !== undefined) throw new StateReplacedError(statePath, 0, this.floor.version, 'the state file was reset while this store was in use');
      startOver = { how: 'reset-state', statePath, resetAt: record.resetAt, reason: record.reason };
    } else {
      const floor = this.floor;
      if (floor !== undefined && record.version < floor.version) {
        throw new StateReplacedError(statePath, record.version, floor.version, `the state file records version ${record.version}`);
      }
      if (floor !== undefined && record.version === floor.version && record.digest !== floor.digest) {
        throw new StateReplacedError(statePath, record.version, floor.version, `the state file records other content for version ${record.version}`);
      }
      // Higher than ours is fine: another process sharing the file accepted a newer list.
      accepted = record;
      this.floor = record;
    }
    const now = this.opts.now?.() ?? new Date();
    const list = await verifyTrustDocument(doc, { anchor: accepted?.keys ?? this.opts.anchor, accepted, now });
    if (accepted === undefined || list.version !== accepted.version || list.rotated) {
      this.floor = await writeTrustState(statePath, list, now);
    }
    if (startOver !== undefined) this.emit('start-over', { ...startOver, version: list.version } satisfies StartOverEvent);
    return list;
  }
}
