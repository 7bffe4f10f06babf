// The application for the sustained benchmark: what a real one does with
// each delivery — verify X-Hub-Signature-256, parse the JSON — and answers
// 200, or 503 while "down". /control/{down,up,stats} steer it; after "up" it
// notes when each conversation first got a delivery.
//
// node host/benches/app.js   (prints "patchbay listening on http://ADDR")
'use strict';
const http = require('http');
const crypto = require('crypto');

const SECRET = process.env.PATCHBAY_BENCH_APP_SECRET || 'bench-app-secret';
let down = false;
let received = 0;
let upAt = null;
const resumed = new Map();

function hook(req, res, body) {
  if (down) {
    res.writeHead(503).end();
    return;
  }
  const expected = 'sha256=' + crypto.createHmac('sha256', SECRET).update(body).digest('hex');
  const given = req.headers['x-hub-signature-256'] || '';
  if (given.length !== expected.length ||
      !crypto.timingSafeEqual(Buffer.from(given), Buffer.from(expected))) {
    res.writeHead(401).end();
    return;
  }
  let message;
  try {
    message = JSON.parse(body);
  } catch (e) {
    res.writeHead(400).end();
    return;
  }
  received += 1;
  if (upAt !== null && message.conversation && !resumed.has(message.conversation.id)) {
    resumed.set(message.conversation.id, Date.now() - upAt);
  }
  res.writeHead(200).end();
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    switch (req.url) {
      case '/hook': return hook(req, res, body);
      case '/control/down': down = true; return res.end();
      case '/control/up': resumed.clear(); upAt = Date.now(); down = false; return res.end();
      case '/control/stats': {
        const slowest = Math.max(0, ...resumed.values());
        return res.end(`${received} ${resumed.size} ${slowest}`);
      }
      default: res.writeHead(404).end();
    }
  });
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => {
  console.log(`patchbay listening on http://127.0.0.1:${server.address().port}`);
});
