'use strict';
let n = 0;

exports.activate = (host) => {
  host.hook('request', (req) => ({ ...req, counted: ++n, counter: 'counter 1.0.0' }), { priority: 1 });
};
