// A round-robin HTTP proxy on loopback, for the multi-node tests: each request goes to the next
// upstream in turn, with the Host header and every other header as the client sent them (the
// nodes' public URL is the proxy's).
import http from 'node:http';

export async function startRoundRobinProxy() {
  const upstreams = [];
  const counts = [];
  const log = [];
  let next = 0;
  const server = http.createServer((req, res) => {
    if (upstreams.length === 0) {
      res.writeHead(503).end('no upstream yet');
      return;
    }
    const i = next++ % upstreams.length;
    counts[i] += 1;
    log.push(`${i} ${req.method} ${req.url.split('?')[0]}`);
    const up = http.request({
      host: '127.0.0.1',
      port: upstreams[i],
      method: req.method,
      path: req.url,
      headers: req.headers,
      agent: false,
      timeout: 15_000,
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.rawHeaders);
      ur.pipe(res);
    });
    up.on('timeout', () => up.destroy(new Error('upstream timeout')));
    up.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'Content-Type': 'text/plain' });
      res.end(`proxy: ${e.message}`);
    });
    req.pipe(up);
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    setUpstreams(ports) {
      upstreams.splice(0, upstreams.length, ...ports);
      counts.splice(0, counts.length, ...ports.map(() => 0));
    },
    counts: () => [...counts],
    /** "node method path" of every request so far. */
    log: () => [...log],
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
