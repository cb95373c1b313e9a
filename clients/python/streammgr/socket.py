"""A drop-in socket module whose socketpair() is the daemon's.

Replace ``import socket`` with ``from streammgr import socket``: every name
is the socket module's, except socketpair(), which returns a connected
pair of daemon streams (streammgr.PairSocket) to pass to
open_connection(sock=...) of ``streammgr.asyncio``, as asyncio's
socketpair example does.
"""

from __future__ import annotations

import socket as _socket
from socket import *  # noqa: F401,F403
from typing import Any

from ._api import socketpair  # type: ignore[assignment] # noqa: F401


def __getattr__(name: str) -> Any:
    return getattr(_socket, name)
