"""A drop-in asyncio module whose streams go through streammgrd.

Replace ``import asyncio`` with ``from streammgr import asyncio``: every
name is asyncio's, except open_connection, open_unix_connection,
start_server and start_unix_server, which are streammgr's (with the daemon
address of streammgr.install(), $STREAMMGR_ADDR or the default socket).
StreamReader and StreamWriter stay asyncio's classes (streammgr's streams
are subclasses of them, so isinstance() checks hold).
"""

from __future__ import annotations

import asyncio as _asyncio
from asyncio import *  # noqa: F401,F403
from typing import Any

from ._api import (open_connection, open_unix_connection, start_server,  # type: ignore[assignment] # noqa: F401
                   start_unix_server)


def __getattr__(name: str) -> Any:
    # Submodules and private names (asyncio.streams, asyncio.subprocess, ...).
    return getattr(_asyncio, name)


def __dir__() -> list[str]:
    return sorted(set(dir(_asyncio)) | set(globals()))
