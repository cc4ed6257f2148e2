'use strict';
// Keeps 16 MiB of every request forever: a cache without eviction. The host's memory limit stops it.
const kept = [];

exports.activate = (host) => {
  host.hook('request', (req) => {
    kept.push(Buffer.alloc(16 * 1024 * 1024, 1));
    return { ...req, cached: kept.length };
  });
};
