// An ES module consumer of the installed package: named imports.
import { Sandbox, PluginHost, TrustStore, generateSigningKey, createTrustList, addEntry, signTrustList,
  serializeTrustList, digestDirectory } from 'warden';
import helper from './plugin-check.cjs';

await helper.check({ Sandbox, PluginHost, TrustStore, generateSigningKey, createTrustList, addEntry, signTrustList,
  serializeTrustList, digestDirectory }, 'esm');
