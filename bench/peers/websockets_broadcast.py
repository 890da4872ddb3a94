"""The baseline peer: the broadcast server of the websockets documentation, as written there.

Every connection joins the one set of clients; every message received is relayed to all of
them with ``websockets.broadcast`` (topic "Broadcasting" of the websockets docs). No auth, no
rooms, no presence, no history: the floor of what a Python server on the same library costs.
The only additions are the port argument and uvloop (the backend runs on uvloop too, so the
ratio measures the backend's own code, not the event loop).

Run: ``python bench/peers/websockets_broadcast.py PORT``.
"""

from __future__ import annotations

import sys

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

CLIENTS: set[ServerConnection] = set()


async def handler(websocket: ServerConnection) -> None:
    CLIENTS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CLIENTS, message)
    finally:
        CLIENTS.remove(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None) as server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
