'use strict';
// A well-behaved plugin: it transforms requests (a waterfall hook) and answers status (parallel).
const fs = require('fs');

exports.activate = (host) => {
  const motd = fs.readFileSync(host.config.motdFile, 'utf8').trim();
  host.hook('request', (req) => ({ ...req, headers: { ...req.headers, 'x-greeting': `hello ${req.user}` } }), { priority: 10 });
  host.hook('status', () => ({ plugin: 'greeter', motd, pid: process.pid }));
  host.log('greeter ready');
};
