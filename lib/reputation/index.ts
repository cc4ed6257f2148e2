/** A plugin's reputation from the signals the host has: the audit log and the trust list. */
export { reputation, formatReputation, Reputation, ReputationSignals, Contribution } from './score';
export { ReputationLedger, PluginTally, signalsFor, publishersFirstListed, REPUTATION_EVENTS } from './ledger';
