// A scripted WebSocket server (Node ws) for resocket's interop tests.
//
// Usage: node server.js PLAN [deflate]
// PLAN is a JSON list of actions, one per connection in order; the last one
// repeats. Each upgraded connection first reads one message (the client's
// handshake hello), then acts:
//   echo                         echo every message until the client leaves
//   close:CODE[:REASON]          close with CODE
//   terminate                    destroy the socket, no close frame
//   reject:STATUS[:RETRY_AFTER]  answer the upgrade with STATUS instead
// With "deflate" the server negotiates permessage-deflate.
// Prints "listening PORT" once ready.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const plan = JSON.parse(process.argv[2]);
const deflate = process.argv[3] === 'deflate';
let connections = 0;

const server = http.createServer((req, res) => {
  res.writeHead(426, { 'Content-Type': 'text/plain' });
  res.end('WebSocket only\n');
});
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: deflate ? { threshold: 0 } : false });

server.on('upgrade', (req, socket, head) => {
  const [kind, ...args] = plan[Math.min(connections, plan.length - 1)].split(':');
  connections++;
  if (kind === 'reject') {
    let response = `HTTP/1.1 ${args[0]} Rejected\r\nConnection: close\r\nContent-Length: 0\r\n`;
    if (args[1]) response += `Retry-After: ${args[1]}\r\n`;
    socket.end(response + '\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.once('message', () => { // the handshake hello
      if (kind === 'echo') {
        ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      } else if (kind === 'close') {
        ws.close(Number(args[0]), args[1] || 'interop');
      } else if (kind === 'terminate') {
        ws.terminate();
      }
    });
  });
});

server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
