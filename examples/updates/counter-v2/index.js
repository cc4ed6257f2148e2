'use strict';
const perUser = new Map();

exports.activate = (host) => {
  host.hook('request', (req) => {
    perUser.set(req.user, (perUser.get(req.user) || 0) + 1);
    return { ...req, counted: perUser.get(req.user), counter: 'counter 2.0.0' };
  }, { priority: 1 });
};
