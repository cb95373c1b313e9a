"""install() / uninstall(): route asyncio's stream functions through the
daemon, so that unmodified programs and libraries use it."""

from __future__ import annotations

import asyncio
import asyncio.streams
import functools
from typing import Any, Callable

from . import _api, _tls

__all__ = ["install", "uninstall", "installed"]

_NAMES = ("open_connection", "start_server", "open_unix_connection", "start_unix_server")
_saved: dict[tuple[Any, str], Any] = {}


def _wrap(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    ours = getattr(_api, name)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwds: Any) -> Any:
        sock = kwds.get("sock")
        if sock is not None and not isinstance(sock, _api.PairSocket):
            # A socket this process already holds stays its own: the
            # daemon cannot take it over.
            return await original(*args, **kwds)
        return await ours(*args, **kwds)

    wrapper.__streammgr__ = True  # type: ignore[attr-defined]
    return wrapper


def install(address: str | None = None) -> None:
    """Replaces asyncio.open_connection, start_server, open_unix_connection
    and start_unix_server (in asyncio and asyncio.streams) with streammgr's,
    which use the daemon at address (None: $STREAMMGR_ADDR, else the
    daemon's default socket). A call that passes sock= with a socket of
    this process still goes to asyncio. SSLContexts created from now on
    remember their certificate files and ALPN protocols
    (track_ssl_contexts()), so that ssl= works unmodified. Calling it again
    changes the address."""
    _api.configure(address)
    _tls.track_ssl_contexts()
    if _saved:
        return
    for name in _NAMES:
        wrapper = _wrap(name, getattr(asyncio.streams, name))
        for mod in (asyncio, asyncio.streams):
            _saved[(mod, name)] = getattr(mod, name)
            setattr(mod, name, wrapper)


def uninstall() -> None:
    """Puts asyncio's own functions back."""
    for (mod, name), original in _saved.items():
        setattr(mod, name, original)
    _saved.clear()
    _tls.untrack_ssl_contexts()
    _api.configure(None)


def installed() -> bool:
    return bool(_saved)
