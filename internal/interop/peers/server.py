#!/usr/bin/env python3
"""A scripted WebSocket server (Python websockets) for resocket's interop tests.

Usage: server.py PLAN
PLAN is a JSON list of actions, one per connection in order; the last one
repeats. Each upgraded connection first reads one message (the client's
handshake hello), then acts:
  echo               echo every message until the client leaves
  close:CODE[:REASON] close with CODE
  drop               abort the TCP connection, no close frame
  reject:STATUS[:RETRY_AFTER]  answer the upgrade with STATUS instead (process_request)
Prints "listening PORT" once ready.
"""
import asyncio
import http
import json
import sys

import websockets

PLAN = json.loads(sys.argv[1])
connections = 0


class Protocol(websockets.WebSocketServerProtocol):
    async def process_request(self, path, request_headers):
        global connections
        self.action = PLAN[min(connections, len(PLAN) - 1)].split(":")
        connections += 1
        if self.action[0] == "reject":
            headers = []
            if len(self.action) > 2 and self.action[2]:
                headers.append(("Retry-After", self.action[2]))
            return http.HTTPStatus(int(self.action[1])), headers, b"rejected by the interop peer\n"
        return None


async def handler(ws, path):
    kind, *args = ws.action
    try:
        await ws.recv()  # the handshake hello
    except websockets.ConnectionClosed:
        return
    if kind == "echo":
        async for message in ws:
            await ws.send(message)
    elif kind == "close":
        await ws.close(int(args[0]), args[1] if len(args) > 1 else "interop")
    elif kind == "drop":
        ws.transport.abort()


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, create_protocol=Protocol) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening {port}", flush=True)
        await asyncio.Future()


asyncio.run(main())
