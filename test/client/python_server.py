"""A python-websockets (10.x) server for the client interop tests.

Usage: /usr/bin/python3 python_server.py [deflate|none]

Prints {"port": N} once listening, then serves until stdin closes:
  /echo      every message comes back unchanged
  /close     closes with 4005 "py bye" after the first message
  /fragments sends a fragmented text message, then echoes
Each connection's negotiated extensions and subprotocol are printed as {"event": "open", ...}.
"""

import asyncio
import json
import sys

import websockets


def emit(**fields):
    print(json.dumps(fields), flush=True)


async def handler(ws, path):
    emit(
        event="open",
        path=path,
        subprotocol=ws.subprotocol,
        extensions=ws.response_headers.get("Sec-WebSocket-Extensions"),
        offered=ws.request_headers.get("Sec-WebSocket-Extensions"),
    )
    try:
        if path == "/close":
            await ws.recv()
            await ws.close(4005, "py bye")
            emit(event="closed", code=ws.close_code, reason=ws.close_reason)
            return
        if path == "/fragments":
            await ws.send(iter(["frag", "men", "ted " * 1000]))
        async for message in ws:
            await ws.send(message)
    except websockets.ConnectionClosed as closed:
        emit(event="closed", code=closed.code, reason=closed.reason)
        return
    emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def main():
    compression = None if len(sys.argv) > 1 and sys.argv[1] == "none" else "deflate"
    async with websockets.serve(
        handler, "127.0.0.1", 0, compression=compression, subprotocols=["chat.v1"], max_size=16 * 1024 * 1024
    ) as server:
        port = server.sockets[0].getsockname()[1]
        emit(port=port)
        loop = asyncio.get_running_loop()
        # Serve until the test closes our stdin (or kills us).
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
