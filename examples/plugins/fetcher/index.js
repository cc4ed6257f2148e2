'use strict';
// A plugin with network grants: the API it needs (net:connect to one address and port), and a name
// an operator thought harmless (status.demo) whose DNS answer now points at the cloud metadata
// address. It calls the API, then tries for the instance credentials both ways.
//
// node:http, not fetch(): without cgroups (an unprivileged host) the memory limit is RLIMIT_AS,
// under which fetch's WebAssembly HTTP parser cannot reserve its memory and the process dies.
const http = require('http');

function get(url) {
  return new Promise((resolve) => {
    const req = http.get(url, { timeout: 4000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d)).on('end', () => resolve(`${res.statusCode} ${body.trim()}`));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
    req.on('error', (e) => resolve(`refused (${e.code || e.message})`));
  });
}

exports.activate = (host) => {
  host.hook('egress', async () => {
    const api = `${host.config.api}/v1/weather?city=Oslo`;
    const report = [`GET ${api}: ${await get(api)}`];
    const meta = 'http://169.254.169.254/latest/meta-data/iam/security-credentials/';
    report.push(`GET ${meta}: ${await get(meta)}`);
    const byName = 'http://status.demo/latest/meta-data/';
    report.push(`GET ${byName}: ${await get(byName)}`);
    return { report };
  });
};
