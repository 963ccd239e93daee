"""Scripted conversations with a sockway server through python-websockets (10.x), for the interop tests.

Usage: /usr/bin/python3 python_client.py SCENARIO URL [SUBPROTOCOL ...]

Prints one JSON object per line describing what the client saw; the test compares them with what it
expects. Binary payloads are reported as hex (small) plus length and SHA-256, texts verbatim.
"""

import asyncio
import hashlib
import json
import os
import sys

import websockets

LARGE = 5 * 1024 * 1024


def emit(**fields):
    print(json.dumps(fields, ensure_ascii=False), flush=True)


def describe(message):
    if isinstance(message, str):
        data = message.encode("utf-8")
        out = {"type": "text", "length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        if len(data) <= 4096:
            out["text"] = message
        return out
    out = {"type": "binary", "length": len(message), "sha256": hashlib.sha256(message).hexdigest()}
    if len(message) <= 4096:
        out["hex"] = message.hex()
    return out


def opened(ws):
    emit(
        event="open",
        subprotocol=ws.subprotocol,
        extensions=[type(e).__name__ for e in ws.extensions],
        response_extensions=ws.response_headers.get("Sec-WebSocket-Extensions"),
        request_extensions=ws.request_headers.get("Sec-WebSocket-Extensions"),
    )


async def echo(ws, message, label):
    await ws.send(message)
    reply = await asyncio.wait_for(ws.recv(), 10)
    if isinstance(message, list):
        message = "".join(message) if isinstance(message[0], str) else b"".join(message)
    sent = message.encode("utf-8") if isinstance(message, str) else message
    emit(event="message", label=label, sent_sha256=hashlib.sha256(sent).hexdigest(), **describe(reply))


async def conversation(uri, subprotocols):
    """Echo of text, binary, empty and large messages, a ping, then a client close 4000 'bye'."""
    async with websockets.connect(uri, subprotocols=subprotocols or None, max_size=16 * 1024 * 1024) as ws:
        opened(ws)
        await echo(ws, "hello from python ✓ 😀", "text")
        await echo(ws, bytes(range(256)), "binary")
        await echo(ws, "", "empty-text")
        await echo(ws, b"", "empty-binary")
        await echo(ws, os.urandom(LARGE), "large-binary")
        await echo(ws, "xyz✓" * (LARGE // 6), "large-text")
        # An iterable sends one fragmented message (one frame per item).
        await echo(ws, ["fra", "gmen", "ted ✓"], "fragmented-text")
        await echo(ws, [b"\x00\x01", b"", b"\x02\xff"], "fragmented-binary")
        pong_waiter = await ws.ping(b"x")
        try:
            # websockets resolves the waiter only for a pong whose payload matches the ping's.
            await asyncio.wait_for(pong_waiter, 5)
            emit(event="pong", ok=True)
        except asyncio.TimeoutError:
            emit(event="pong", ok=False)
        await echo(ws, "after ping", "after-ping")
        await ws.close(code=4000, reason="bye")
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def server_close(uri, subprotocols):
    """Asks the server to close (it closes with 4001 'done') and reports the close frame it got."""
    async with websockets.connect(uri, subprotocols=subprotocols or None) as ws:
        opened(ws)
        await ws.send("close please")
        try:
            message = await asyncio.wait_for(ws.recv(), 10)
            emit(event="message", **describe(message))
        except websockets.ConnectionClosed as closed:
            rcvd = closed.rcvd
            emit(
                event="closed",
                code=ws.close_code,
                reason=ws.close_reason,
                rcvd_code=rcvd.code if rcvd else None,
                rcvd_reason=rcvd.reason if rcvd else None,
            )


async def keepalive(uri, subprotocols):
    """Stays idle while the server pings (python-websockets answers), then checks the session still echoes."""
    async with websockets.connect(uri, subprotocols=subprotocols or None, ping_interval=None) as ws:
        opened(ws)
        await asyncio.sleep(1.0)  # > pingPeriod + timeout: a missing pong would close first
        await echo(ws, "still here", "after-idle")
        await ws.close(code=1000, reason="")
        emit(event="closed", code=ws.close_code, reason=ws.close_reason)


async def refused(uri, subprotocols):
    try:
        async with websockets.connect(uri, subprotocols=subprotocols or None) as ws:
            opened(ws)
    except websockets.InvalidStatusCode as error:
        emit(event="refused", status=error.status_code)


SCENARIOS = {
    "conversation": conversation,
    "server-close": server_close,
    "keepalive": keepalive,
    "refused": refused,
}


def main():
    scenario, uri, *subprotocols = sys.argv[1:]
    try:
        asyncio.run(asyncio.wait_for(SCENARIOS[scenario](uri, subprotocols), 30))
    except Exception as error:  # report, so the test shows what went wrong
        emit(event="error", type=type(error).__name__, message=str(error))
        sys.exit(1)


if __name__ == "__main__":
    main()
