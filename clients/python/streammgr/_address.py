"""Where the daemon is, and how to reach it.

The daemon address is, in order: the ``address`` argument, install()'s
address, $STREAMMGR_ADDR, or the daemon's default socket
($XDG_RUNTIME_DIR/streammgrd.sock, else /tmp/streammgrd-$UID/streammgrd.sock).

Forms: ``unix:/path`` (also ``unix:///path``, ``unix:relative``, a bare
``/path``), ``unix:@name`` (Linux abstract namespace), ``host:port``
(plaintext TCP: a daemon started with --insecure-tcp) and
``https://host:port`` (TLS; $STREAMMGR_CA_FILE names the PEM roots that
verify the daemon, default the system's; $STREAMMGR_CERT_FILE and
$STREAMMGR_KEY_FILE a client certificate for mTLS).

$STREAMMGR_TOKEN, when set, is sent as ``authorization: Bearer TOKEN``.
$STREAMMGR_TRANSPORT=grpcio runs the Session over grpcio instead of the
built-in HTTP/2 client.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass

ADDR_ENV = "STREAMMGR_ADDR"
TOKEN_ENV = "STREAMMGR_TOKEN"
TRANSPORT_ENV = "STREAMMGR_TRANSPORT"


@dataclass(frozen=True)
class DaemonAddress:
    """A parsed daemon address."""

    kind: str  # "unix", "tcp" or "tls"
    path: str = ""  # unix: the socket path ("\0name" for an abstract one)
    host: str = ""
    port: int = 0
    text: str = ""  # as given

    @property
    def authority(self) -> str:
        if self.kind == "unix":
            return "localhost"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def grpc_target(self) -> str:
        """The address as a grpcio target."""
        if self.kind == "unix":
            if self.path.startswith("\0"):
                return "unix-abstract:" + self.path[1:]
            return "unix:" + self.path
        return self.authority


def default_socket() -> str:
    """The daemon's default socket path (README, "Two commands")."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        return os.path.join(xdg, "streammgrd.sock")
    return f"/tmp/streammgrd-{os.getuid()}/streammgrd.sock"


def parse_address(text: str) -> DaemonAddress:
    t = text.strip()
    if not t:
        raise ValueError("empty streammgrd address")
    if t.startswith("unix:"):
        path = t[len("unix:"):]
        if path.startswith("//"):
            path = path[2:]
        if not path:
            raise ValueError(f"streammgrd address {text!r}: no socket path")
        if path.startswith("@"):
            return DaemonAddress("unix", path="\0" + path[1:], text=text)
        return DaemonAddress("unix", path=os.path.abspath(path), text=text)
    if t.startswith("/"):
        return DaemonAddress("unix", path=t, text=text)
    kind = "tcp"
    for prefix, k in (("https://", "tls"), ("tls:", "tls"), ("http://", "tcp"), ("dns:///", "tcp")):
        if t.startswith(prefix):
            t = t[len(prefix):]
            kind = k
            break
    host, sep, port = t.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"streammgrd address {text!r}: want unix:/path, host:port or https://host:port")
    host = host.strip("[]")
    return DaemonAddress(kind, host=host, port=int(port), text=text)


def resolve_address(address: str | None, installed: str | None = None) -> DaemonAddress:
    if address is None:
        address = installed
    if address is None:
        address = os.environ.get(ADDR_ENV) or None
    if address is None:
        return DaemonAddress("unix", path=default_socket(), text="unix:" + default_socket())
    return parse_address(address)


def metadata() -> list[tuple[str, str]]:
    """Call metadata: the bearer token from $STREAMMGR_TOKEN, if set."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return [("authorization", "Bearer " + token.strip())]
    return []


def tls_context() -> ssl.SSLContext:
    """The client TLS context for an https:// daemon address."""
    ctx = ssl.create_default_context(cafile=os.environ.get("STREAMMGR_CA_FILE") or None)
    cert = os.environ.get("STREAMMGR_CERT_FILE")
    if cert:
        ctx.load_cert_chain(cert, os.environ.get("STREAMMGR_KEY_FILE") or None)
    ctx.set_alpn_protocols(["h2"])
    return ctx
