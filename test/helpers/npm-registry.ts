/**
 * A tiny npm registry for the install tests, run inside a network namespace the test created:
 * serves ROOT/<name>/index.json as the packument of <name> and ROOT/<name>/-/<file>.tgz as its
 * tarballs, and appends every request's path to ROOT/requests.log (so a test sees what was asked,
 * including a lifecycle script calling home). Prints 'ready' once it listens on PORT.
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';

const root = process.argv[2]!;
const port = Number(process.argv[3] ?? 4873);

const server = http.createServer((req, res) => {
  const url = decodeURIComponent((req.url ?? '/').split('?')[0]!);
  fs.appendFileSync(path.join(root, 'requests.log'), `${req.method} ${url}\n`);
  const parts = url.split('/').filter((p) => p !== '' && p !== '..' && p !== '.');
  const file = parts.length === 1 ? path.join(root, parts[0]!, 'index.json') : path.join(root, ...parts);
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) {
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
    return;
  }
  res.writeHead(200, { 'content-type': file.endsWith('.json') ? 'application/json' : 'application/octet-stream' });
  res.end(fs.readFileSync(file));
});
server.listen({ port, host: '0.0.0.0' }, () => process.stdout.write('ready\n'));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
