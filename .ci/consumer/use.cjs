'use strict';
// A CommonJS consumer of the installed package: a sandboxed command and a signed plugin.
const { Sandbox, PluginHost, TrustStore, generateSigningKey, createTrustList, addEntry, signTrustList,
  serializeTrustList, digestDirectory } = require('warden');
const { check } = require('./plugin-check.cjs');

check({ Sandbox, PluginHost, TrustStore, generateSigningKey, createTrustList, addEntry, signTrustList,
  serializeTrustList, digestDirectory }, 'cjs').catch((err) => { console.error(err); process.exit(1); });
