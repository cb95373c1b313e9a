"""ssl= arguments as the daemon's TlsOptions.

The daemon does the TLS, so an ssl.SSLContext has to be described to it.
What carries over by itself:

* verify_mode CERT_NONE or check_hostname False -> insecure_skip_verify
  (Go verifies chain and name together: without check_hostname the chain
  is not verified either);
* the CA certificates the context loaded from a cafile or cadata
  (get_ca_certs(binary_form=True)); a context holding exactly the system's
  default roots sends none, and the daemon uses its own system roots;
* server side, verify_mode CERT_REQUIRED or CERT_OPTIONAL -> client
  certificates required, verified against those CA certificates;
* server_hostname and ssl_handshake_timeout.

What an SSLContext does not reveal, so that streammgr must be told:

* the certificate chain and private key given to load_cert_chain (needed
  for every server and for client certificates): use
  ``streammgr.load_cert_chain(ctx, certfile, keyfile)`` instead of
  ``ctx.load_cert_chain(...)``, or call ``streammgr.install()`` (or
  ``streammgr.track_ssl_contexts()``) before the context loads them;
  keys must be unencrypted PEM (the daemon cannot ask for a password);
* the ALPN protocols given to set_alpn_protocols: use
  ``streammgr.set_alpn_protocols(ctx, [...])``, or track contexts as
  above;
* CA directories (load_verify_locations(capath=...)), which OpenSSL reads
  lazily, ciphers, TLS versions, options, session tickets, SNI and other
  callbacks, custom verify flags: the daemon's defaults apply (TLS 1.2+).
"""

from __future__ import annotations

import os
import ssl
from typing import Any, Iterable

from .v1 import streammgr_pb2 as pb

__all__ = ["load_cert_chain", "set_alpn_protocols", "track_ssl_contexts", "untrack_ssl_contexts",
           "client_options", "server_options"]

_CERT_ATTR = "_streammgr_cert_key"
_ALPN_ATTR = "_streammgr_alpn"


def _read_text(path: str | os.PathLike[str] | bytes) -> str:
    with open(path, "rb") as f:
        return f.read().decode("ascii", "replace")


def _record_cert(ctx: ssl.SSLContext, certfile: Any, keyfile: Any) -> None:
    cert = _read_text(certfile)
    key = _read_text(keyfile) if keyfile is not None else cert  # key in the cert file
    setattr(ctx, _CERT_ATTR, (cert, key))


def load_cert_chain(ctx: ssl.SSLContext, certfile: str | os.PathLike[str], keyfile: str | os.PathLike[str] | None = None,
                    password: Any = None) -> None:
    """ctx.load_cert_chain(certfile, keyfile, password), remembering the
    files so that the daemon can be given the certificate and key."""
    ctx.load_cert_chain(certfile, keyfile, password)
    _record_cert(ctx, certfile, keyfile)


def set_alpn_protocols(ctx: ssl.SSLContext, protocols: Iterable[str]) -> None:
    """ctx.set_alpn_protocols(protocols), remembering them for the daemon."""
    protos = list(protocols)
    ctx.set_alpn_protocols(protos)
    setattr(ctx, _ALPN_ATTR, protos)


_orig: dict[str, Any] = {}


def track_ssl_contexts() -> None:
    """From now on, every SSLContext remembers what load_cert_chain and
    set_alpn_protocols gave it (install() calls this)."""
    if _orig:
        return
    _orig["load_cert_chain"] = ssl.SSLContext.load_cert_chain
    _orig["set_alpn_protocols"] = ssl.SSLContext.set_alpn_protocols

    def tracked_load_cert_chain(self: ssl.SSLContext, certfile: Any, keyfile: Any = None, password: Any = None) -> None:
        _orig["load_cert_chain"](self, certfile, keyfile, password)
        try:
            _record_cert(self, certfile, keyfile)
        except OSError:
            pass

    def tracked_set_alpn_protocols(self: ssl.SSLContext, alpn_protocols: Iterable[str]) -> None:
        protos = list(alpn_protocols)
        _orig["set_alpn_protocols"](self, protos)
        setattr(self, _ALPN_ATTR, protos)

    ssl.SSLContext.load_cert_chain = tracked_load_cert_chain  # type: ignore[method-assign,assignment]
    ssl.SSLContext.set_alpn_protocols = tracked_set_alpn_protocols  # type: ignore[method-assign]


def untrack_ssl_contexts() -> None:
    if not _orig:
        return
    ssl.SSLContext.load_cert_chain = _orig.pop("load_cert_chain")  # type: ignore[method-assign]
    ssl.SSLContext.set_alpn_protocols = _orig.pop("set_alpn_protocols")  # type: ignore[method-assign]


_default_roots: frozenset[bytes] | None = None


def _system_roots() -> frozenset[bytes]:
    global _default_roots
    if _default_roots is None:
        try:
            _default_roots = frozenset(ssl.create_default_context().get_ca_certs(binary_form=True))
        except ssl.SSLError:
            _default_roots = frozenset()
    return _default_roots


def _ca_pem(ctx: ssl.SSLContext) -> str:
    ders = ctx.get_ca_certs(binary_form=True)
    if not ders or frozenset(ders) == _system_roots():
        return ""
    return "".join(ssl.DER_cert_to_PEM_cert(d) for d in ders)


def _duration(seconds: float, field: str) -> Any:
    d = pb.TlsOptions().handshake_timeout
    if seconds <= 0:
        raise ValueError(f"{field} should be a positive number, got {seconds}")
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def client_options(ssl_arg: Any, server_hostname: str | None, ssl_handshake_timeout: float | None,
                   default_host: str | None) -> pb.TlsOptions | None:
    """TlsOptions for a client connection (open_connection's ssl=,
    start_tls on a client stream), or None without TLS."""
    if ssl_arg is None or ssl_arg is False:
        if server_hostname is not None:
            raise ValueError("server_hostname is only meaningful with ssl")
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        return None
    opts = pb.TlsOptions()
    if server_hostname is not None:
        opts.server_hostname = server_hostname
    elif default_host:
        opts.server_hostname = default_host
    if ssl_handshake_timeout is not None:
        opts.handshake_timeout.CopyFrom(_duration(ssl_handshake_timeout, "ssl_handshake_timeout"))
    if ssl_arg is True:
        return opts
    if not isinstance(ssl_arg, ssl.SSLContext):
        raise TypeError(f"ssl should be an ssl.SSLContext, True or None, got {ssl_arg!r}")
    ctx = ssl_arg
    if ctx.verify_mode == ssl.CERT_NONE or not ctx.check_hostname:
        opts.insecure_skip_verify = True
    else:
        opts.ca_pem = _ca_pem(ctx)
    cert = getattr(ctx, _CERT_ATTR, None)
    if cert is not None:
        opts.cert_pem, opts.key_pem = cert
    opts.alpn_protocols.extend(getattr(ctx, _ALPN_ATTR, ()))
    return opts


def server_options(ssl_arg: Any, ssl_handshake_timeout: float | None) -> pb.TlsOptions | None:
    """TlsOptions for a server (start_server's ssl=, start_tls on an
    accepted stream), or None without TLS."""
    if ssl_arg is None or ssl_arg is False:
        if ssl_handshake_timeout is not None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        return None
    if not isinstance(ssl_arg, ssl.SSLContext):
        raise TypeError(f"ssl argument must be an SSLContext or None, got {ssl_arg!r}")
    ctx = ssl_arg
    cert = getattr(ctx, _CERT_ATTR, None)
    if cert is None:
        raise ValueError(
            "streammgr: the daemon needs this SSLContext's certificate and private key, which an "
            "SSLContext does not reveal: load them with streammgr.load_cert_chain(ctx, certfile, keyfile), "
            "or call streammgr.install() or streammgr.track_ssl_contexts() before ctx.load_cert_chain()")
    opts = pb.TlsOptions(cert_pem=cert[0], key_pem=cert[1])
    opts.alpn_protocols.extend(getattr(ctx, _ALPN_ATTR, ()))
    if ctx.verify_mode in (ssl.CERT_REQUIRED, ssl.CERT_OPTIONAL):
        ders = ctx.get_ca_certs(binary_form=True)
        if not ders:
            raise ValueError("streammgr: the SSLContext requires client certificates but has no CA certificates "
                             "to verify them (load_verify_locations(cafile=...) or cadata=...)")
        opts.client_ca_pem = "".join(ssl.DER_cert_to_PEM_cert(d) for d in ders)
    if ssl_handshake_timeout is not None:
        opts.handshake_timeout.CopyFrom(_duration(ssl_handshake_timeout, "ssl_handshake_timeout"))
    return opts
