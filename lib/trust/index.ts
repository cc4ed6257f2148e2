/** The trust layer: keys, plugin digests, signed and encrypted trust lists, compatibility. */
export * from './errors';
export { canonicalize, parseJsonBounded, JsonValue } from './canonical';
export { readBounded, writeFileAtomic, DEFAULT_MAX_BYTES } from './io';
export {
  PublicKey, SigningKey, EnvelopeKey, keyIdOf, generateSigningKey, generateEnvelopeKey, writeSigningKeyFiles,
  writeEnvelopeKeyFile, loadPublicKey, loadSigningKey, loadEnvelopeKey, publicKeyToJson,
} from './keys';
export { digestDirectory, isDigest, DigestOptions, resolveInTree } from './digest';
export { readPluginTree, PluginTree, TreeEntry, TreeLimits, DEFAULT_TREE_LIMITS } from './tree';
export {
  TrustLevel, TRUST_LEVELS, TrustEntry, KeySet, DeclaredKey, SignedTrustList, TrustSignature, TrustListDocument,
  parseTrustList, serializeTrustList, signedBytes, createTrustList, editTrustList, addEntry, removeEntry, signTrustList,
  formatExpires, keySetOf, isValidPluginName,
} from './document';
export {
  TrustAnchor, AcceptedVersion, VerifyOptions, SignatureTally, VerifiedTrustList, VerificationLevel, TrustCheck,
  verifyTrustList, verifyTrustDocument, checkTrustList, tallySignatures, documentDigest,
} from './verify';
export { LevelPolicy, LevelTable, RECOMMENDED_LEVELS, UNLISTED_LEVELS, ANY_PERMISSION } from './levels';
export { encryptEnvelope, decryptEnvelope, isEnvelope, Envelope } from './envelope';
export { TrustState, ResetState, StateRecord, isResetState, readTrustState, writeTrustState, writeResetState } from './state';
export { TrustStore, TrustStoreOptions, StartOverEvent } from './store';
export { CompatManifest, HostContext, checkManifest, compatibilityProblems, assertCompatible } from './compat';
