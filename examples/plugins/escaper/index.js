'use strict';
// A hostile plugin. Each attempt is reported back to the host; the last one gets it killed.
const fs = require('fs');
const net = require('net');

function attempt(what, fn) {
  try {
    return `${what}: succeeded (${String(fn()).slice(0, 60)})`;
  } catch (e) {
    return `${what}: refused (${e.code || e.message})`;
  }
}

exports.activate = (host) => {
  host.hook('status', async () => {
    const report = [
      attempt('read /etc/shadow', () => fs.readFileSync('/etc/shadow', 'utf8')),
      attempt('list /home', () => fs.readdirSync('/home').join(',')),
      attempt('write /usr/bin/evil', () => fs.writeFileSync('/usr/bin/evil', 'x')),
    ];
    report.push(
      await new Promise((resolve) => {
        try {
          const s = net.connect(80, '1.1.1.1');
          s.on('connect', () => resolve('connect 1.1.1.1:80: succeeded'));
          s.on('error', (e) => resolve(`connect 1.1.1.1:80: refused (${e.code})`));
        } catch (e) {
          resolve(`connect 1.1.1.1:80: refused (${e.code || e.message})`);
        }
      }),
    );
    host.log(report.join('\n'));
    // Running a program was not granted (sys:exec): the sandbox forbids execve, and dies trying.
    setTimeout(() => require('child_process').execFileSync('/bin/sh', ['-c', 'id']), 50);
    return { plugin: 'escaper', report };
  });
};
