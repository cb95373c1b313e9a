"""asyncio Streams through streammgrd.

``streammgr.open_connection``, ``open_unix_connection``, ``start_server``
and ``start_unix_server`` have asyncio's signatures (plus ``address=``,
the daemon) and give asyncio's StreamReader / StreamWriter / Server
behaviour, with the sockets owned by the daemon and driven over its
Session RPC. ``streammgr.install()`` puts them in place of asyncio's own,
so that unmodified programs and libraries go through the daemon;
``from streammgr import asyncio`` is a drop-in ``asyncio`` module that does
the same for one program.

See README.md beside this package for the details: the daemon address,
TLS, what differs from asyncio.
"""

from ._admin import list_servers, list_streams
from ._api import (PairSocket, Server, SockNotSupported, current_address, open_connection,
                   open_unix_connection, socketpair, start_server, start_unix_server)
from ._errors import ErrorDetails, StreammgrError
from ._install import install, installed, uninstall
from ._streams import DaemonSocket, SSLObjectInfo, StreamReader, StreamTransport, StreamWriter
from ._tls import load_cert_chain, set_alpn_protocols, track_ssl_contexts, untrack_ssl_contexts

__all__ = [
    "open_connection", "open_unix_connection", "start_server", "start_unix_server",
    "StreamReader", "StreamWriter", "StreamTransport", "Server", "DaemonSocket", "SSLObjectInfo",
    "socketpair", "PairSocket", "install", "uninstall", "installed", "current_address",
    "load_cert_chain", "set_alpn_protocols", "track_ssl_contexts", "untrack_ssl_contexts",
    "StreammgrError", "ErrorDetails", "SockNotSupported", "list_streams", "list_servers",
]
__version__ = "0.1.0"
