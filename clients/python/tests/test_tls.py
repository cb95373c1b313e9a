"""TLS: ssl= on open_connection and start_server, start_tls both ways,
verification failures, client certificates, ALPN, the handshake timeout.
Certificates are made here with the cryptography package."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import streammgr
from conftest import Impl, Peer, echo_handler


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Certs:
    def __init__(self, d: str):
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name("streammgr test CA")).issuer_name(_name("streammgr test CA"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                           crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        self.ca = _write(os.path.join(d, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))

        def leaf(cn: str, sans: list[x509.GeneralName], usage: x509.ObjectIdentifier) -> tuple[str, str]:
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
                    .public_key(key.public_key()).serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
                    .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                    .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                    .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                    .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                    .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                   critical=False)
                    .sign(ca_key, hashes.SHA256()))
            return (_write(os.path.join(d, cn + ".pem"), cert.public_bytes(serialization.Encoding.PEM)),
                    _write(os.path.join(d, cn + ".key"), _key_pem(key)))

        self.server_cert, self.server_key = leaf(
            "localhost", [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
            x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
        self.client_cert, self.client_key = leaf("client-one", [x509.DNSName("client-one")],
                                                 x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH)

    def server_ctx(self, client_auth: bool = False) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        streammgr.load_cert_chain(ctx, self.server_cert, self.server_key)
        if client_auth:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cafile=self.ca)
        return ctx

    def client_ctx(self, cert: bool = False) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert:
            streammgr.load_cert_chain(ctx, self.client_cert, self.client_key)
        return ctx


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(str(tmp_path_factory.mktemp("certs")))


async def test_tls_echo_both_ways(impl: Impl, certs: Certs) -> None:
    srv = await impl.start_server(echo_handler, "127.0.0.1", 0, ssl=certs.server_ctx())
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        ctx = certs.client_ctx()
        r, w = await impl.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        w.write(b"secret\n")
        assert await r.readline() == b"secret\n"
        assert not w.can_write_eof()
        cipher = w.get_extra_info("cipher")
        assert isinstance(cipher, tuple) and len(cipher) == 3
        assert cipher[1] in ("TLSv1.2", "TLSv1.3")
        peercert = w.get_extra_info("peercert")
        assert dict(x[0] for x in peercert["subject"])["commonName"] == "localhost"
        assert ("DNS", "localhost") in peercert["subjectAltName"]
        assert w.get_extra_info("sslcontext") is ctx
        obj = w.get_extra_info("ssl_object")
        assert obj.version() in ("TLSv1.2", "TLSv1.3")
        w.close()
        await w.wait_closed()


async def test_tls_client_against_plain_asyncio_server(sm: Impl, certs: Certs) -> None:
    # The daemon's TLS client against Python's TLS server.
    seen: list[asyncio.StreamWriter] = []

    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        seen.append(w)
        await echo_handler(r, w)

    srv = await asyncio.start_server(cb, "127.0.0.1", 0, ssl=certs.server_ctx())
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await sm.open_connection("127.0.0.1", port, ssl=certs.client_ctx())  # checks 127.0.0.1's SAN
        w.write(b"ping\n")
        assert await r.readline() == b"ping\n"
        w.close()
        await w.wait_closed()


async def test_tls_server_against_plain_asyncio_client(sm: Impl, certs: Certs) -> None:
    srv = await sm.start_server(echo_handler, "127.0.0.1", 0, ssl=certs.server_ctx())
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=certs.client_ctx(), server_hostname="localhost")
        w.write(b"pong\n")
        assert await r.readline() == b"pong\n"
        assert w.get_extra_info("peercert")["subject"][0][0][1] == "localhost"
        w.close()
        await w.wait_closed()


async def test_tls_verification_failure(impl: Impl, certs: Certs) -> None:
    srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=certs.server_ctx())
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        with pytest.raises(ssl.SSLCertVerificationError):
            await impl.open_connection("127.0.0.1", port, ssl=True)  # system roots: unknown CA
        with pytest.raises(ssl.SSLCertVerificationError):
            await impl.open_connection("127.0.0.1", port, ssl=certs.client_ctx(), server_hostname="wrong.example")


async def test_tls_insecure_skip_verify(impl: Impl, certs: Certs) -> None:
    srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=certs.server_ctx())
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        r, w = await impl.open_connection("127.0.0.1", port, ssl=ctx)
        w.write(b"x\n")
        assert await r.readline() == b"x\n"
        w.close()
        await w.wait_closed()


async def test_tls_client_certificate(impl: Impl, certs: Certs) -> None:
    names: list[str] = []

    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        cert = w.get_extra_info("peercert")
        names.append(dict(x[0] for x in cert["subject"])["commonName"])
        await echo_handler(r, w)

    srv = await impl.start_server(cb, "127.0.0.1", 0, ssl=certs.server_ctx(client_auth=True))
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await impl.open_connection("127.0.0.1", port, ssl=certs.client_ctx(cert=True),
                                          server_hostname="localhost")
        w.write(b"mtls\n")
        assert await r.readline() == b"mtls\n"
        assert names == ["client-one"]
        w.close()
        await w.wait_closed()
        # Without a client certificate the handshake fails (on one side or
        # the other: TLS 1.3 reports it at the first read).
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            r, w = await impl.open_connection("127.0.0.1", port, ssl=certs.client_ctx(),
                                              server_hostname="localhost")
            w.write(b"x\n")
            await r.readline()
            raise ssl.SSLError("no error reading")


async def test_alpn(sm: Impl, certs: Certs) -> None:
    sctx = certs.server_ctx()
    sctx.set_alpn_protocols(["h2", "http/1.1"])
    srv = await asyncio.start_server(echo_handler, "127.0.0.1", 0, ssl=sctx)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        ctx = certs.client_ctx()
        streammgr.set_alpn_protocols(ctx, ["http/1.1"])
        r, w = await sm.open_connection("127.0.0.1", port, ssl=ctx)
        assert w.get_extra_info("ssl_object").selected_alpn_protocol() == "http/1.1"
        w.close()
        await w.wait_closed()


async def test_server_tls_needs_cert_files(sm: Impl, certs: Certs) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server_cert, certs.server_key)  # not through streammgr: unknown to it
    with pytest.raises(ValueError, match="load_cert_chain"):
        await sm.start_server(echo_handler, "127.0.0.1", 0, ssl=ctx)
    streammgr.track_ssl_contexts()
    try:
        ctx2 = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx2.load_cert_chain(certs.server_cert, certs.server_key)  # tracked now
        srv = await sm.start_server(echo_handler, "127.0.0.1", 0, ssl=ctx2)
        srv.close()
        await srv.wait_closed()
    finally:
        streammgr.untrack_ssl_contexts()


async def test_handshake_timeout(impl: Impl, peer: Peer) -> None:
    # The peer accepts and never answers the ClientHello.
    with pytest.raises(ConnectionAbortedError, match="SSL handshake is taking longer than 0.3 seconds"):
        await impl.open_connection("127.0.0.1", peer.port, ssl=True, server_hostname="localhost",
                                   ssl_handshake_timeout=0.3)


async def test_start_tls_client_side(impl: Impl, certs: Certs) -> None:
    # A STARTTLS-style exchange: plaintext first, then TLS on the same stream.
    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert await r.readline() == b"STARTTLS\n"
        w.write(b"OK\n")
        await w.drain()
        await w.start_tls(certs.server_ctx())
        line = await r.readline()
        w.write(b"secure " + line)
        await w.drain()
        w.close()

    srv = await asyncio.start_server(cb, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await impl.open_connection("127.0.0.1", port)
        w.write(b"STARTTLS\n")
        assert await r.readline() == b"OK\n"
        assert w.get_extra_info("peercert") is None
        await w.start_tls(certs.client_ctx(), server_hostname="localhost")
        assert w.get_extra_info("peercert") is not None
        assert w.get_extra_info("cipher") is not None
        w.write(b"hello\n")
        assert await r.readline() == b"secure hello\n"
        w.close()


async def test_start_tls_server_side(impl: Impl, certs: Certs) -> None:
    async def cb(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        assert await r.readline() == b"STARTTLS\n"
        w.write(b"OK\n")
        await w.drain()
        await w.start_tls(certs.server_ctx())
        line = await r.readline()
        w.write(b"secure " + line)
        await w.drain()
        w.close()

    srv = await impl.start_server(cb, "127.0.0.1", 0)
    async with srv:
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"STARTTLS\n")
        assert await r.readline() == b"OK\n"
        await w.start_tls(certs.client_ctx(), server_hostname="localhost")
        w.write(b"hello\n")
        assert await r.readline() == b"secure hello\n"
        w.close()
