"""permessage-deflate conversation with a sockway echo route through python-websockets (10.x).

Usage: /usr/bin/python3 deflate_client.py URL [default|tuned]

  default  the library's own offer ("permessage-deflate; client_max_window_bits")
  tuned    an explicit offer with every parameter: server_no_context_takeover, client_no_context_takeover,
           server_max_window_bits=10, client_max_window_bits=11

Sends text, binary, empty, large and repeated messages, reads each echo, closes with 1000 and prints one JSON
object: the headers and extension parameters of the handshake, and for each message the SHA-256 and length
of what was sent and what came back.
"""

import asyncio
import hashlib
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory


def digest(message):
    data = message.encode("utf-8") if isinstance(message, str) else message
    return {
        "type": "text" if isinstance(message, str) else "binary",
        "length": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def noise(size, seed):
    """Deterministic bytes that do not compress (xorshift32), the same as the test's noisyBytes."""
    out = bytearray(size)
    x = seed
    for i in range(size):
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        out[i] = x & 0xFF
    return bytes(out)


MESSAGES = [
    ("text", "hello from python ✓ 😀"),
    ("binary", bytes(range(256))),
    ("empty text", ""),
    ("empty binary", b""),
    ("large text", "sockway deflate ✓ " * 100_000),
    ("large binary", noise(300_000, 1)),
    ("repeated text", "hello from python ✓ 😀"),
]


async def main(url, mode):
    if mode == "tuned":
        options = {
            "compression": None,
            "extensions": [
                ClientPerMessageDeflateFactory(
                    server_no_context_takeover=True,
                    client_no_context_takeover=True,
                    server_max_window_bits=10,
                    client_max_window_bits=11,
                )
            ],
        }
    else:
        options = {}
    report = {}
    async with websockets.connect(
        url, max_size=16 * 1024 * 1024, ping_interval=None, open_timeout=10, **options
    ) as ws:
        report["request_extensions"] = ws.request_headers.get("Sec-WebSocket-Extensions")
        report["response_extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
        report["extensions"] = [
            {
                "name": e.name,
                "remote_no_context_takeover": e.remote_no_context_takeover,
                "local_no_context_takeover": e.local_no_context_takeover,
                "remote_max_window_bits": e.remote_max_window_bits,
                "local_max_window_bits": e.local_max_window_bits,
            }
            for e in ws.extensions
        ]
        results = []
        for label, message in MESSAGES:
            await ws.send(message)
            reply = await asyncio.wait_for(ws.recv(), 20)
            results.append(
                {"label": label, "sent": digest(message), "received": digest(reply), "equal": reply == message}
            )
        report["results"] = results
        await ws.close(1000, "bye")
        report["close_code"] = ws.close_code
    print(json.dumps(report, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "default"))
