"""A small HPACK (RFC 7541) encoder and decoder for the gRPC headers of one
HTTP/2 connection.

The encoder never indexes and never uses Huffman coding (both optional);
the decoder implements all of HPACK: the static and dynamic tables, integer
prefixes and Huffman-coded strings, since the daemon's encoder (Go's
x/net/http2/hpack) uses them.
"""

from __future__ import annotations

from ._hpack_tables import HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE

__all__ = ["Decoder", "HpackError", "encode_headers"]


class HpackError(Exception):
    """A header block that cannot be decoded (a COMPRESSION_ERROR)."""


# Huffman decoding: (bit length, code) -> byte. 256 (EOS) is never emitted.
_HUFFMAN_DECODE: dict[tuple[int, int], int] = {
    (length, code): sym for sym, (code, length) in enumerate(zip(HUFFMAN_CODES, HUFFMAN_LENGTHS))
}
_MIN_CODE_LEN = min(HUFFMAN_LENGTHS)


def huffman_decode(data: bytes) -> bytes:
    out = bytearray()
    code = 0
    length = 0
    table = _HUFFMAN_DECODE
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            length += 1
            if length >= _MIN_CODE_LEN:
                sym = table.get((length, code))
                if sym is not None:
                    out.append(sym)
                    code = 0
                    length = 0
                elif length > 30:
                    raise HpackError("invalid Huffman code")
    # Padding: at most 7 bits, all ones (a prefix of EOS).
    if length > 7 or code != (1 << length) - 1:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


def _encode_int(value: int, prefix_bits: int, first: int) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_str(s: bytes) -> bytes:
    return _encode_int(len(s), 7, 0) + s


# Static table indexes of names we send, for the literal-with-indexed-name form.
_STATIC_NAME_INDEX: dict[bytes, int] = {}
for _i, (_name, _value) in enumerate(STATIC_TABLE, start=1):
    _STATIC_NAME_INDEX.setdefault(_name, _i)
_STATIC_PAIR_INDEX: dict[tuple[bytes, bytes], int] = {
    pair: i for i, pair in enumerate(STATIC_TABLE, start=1)
}


def encode_headers(headers: list[tuple[bytes, bytes]]) -> bytes:
    """A header block: static-table matches as indexed fields, everything
    else as literals without indexing (nothing enters the peer's dynamic
    table)."""
    out = bytearray()
    for name, value in headers:
        idx = _STATIC_PAIR_INDEX.get((name, value))
        if idx is not None:
            out += _encode_int(idx, 7, 0x80)
            continue
        nidx = _STATIC_NAME_INDEX.get(name)
        if nidx is not None:
            out += _encode_int(nidx, 4, 0x00)
        else:
            out += b"\x00" + _encode_str(name)
        out += _encode_str(value)
    return bytes(out)


class Decoder:
    """Decodes the header blocks of one connection, in order (the dynamic
    table is shared by all of them)."""

    def __init__(self, max_table_size: int = 4096) -> None:
        self._table: list[tuple[bytes, bytes]] = []  # newest first
        self._size = 0
        self._max_size = max_table_size
        self._settings_max = max_table_size

    def _lookup(self, index: int) -> tuple[bytes, bytes]:
        if index <= 0:
            raise HpackError("header index 0")
        if index <= len(STATIC_TABLE):
            return STATIC_TABLE[index - 1]
        i = index - len(STATIC_TABLE) - 1
        if i >= len(self._table):
            raise HpackError(f"header index {index} out of range")
        return self._table[i]

    def _add(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 32
        self._table.insert(0, (name, value))
        self._size += size
        self._evict()

    def _evict(self) -> None:
        while self._size > self._max_size and self._table:
            n, v = self._table.pop()
            self._size -= len(n) + len(v) + 32

    @staticmethod
    def _int(data: bytes, pos: int, prefix_bits: int) -> tuple[int, int]:
        if pos >= len(data):
            raise HpackError("truncated integer")
        limit = (1 << prefix_bits) - 1
        value = data[pos] & limit
        pos += 1
        if value < limit:
            return value, pos
        shift = 0
        while True:
            if pos >= len(data):
                raise HpackError("truncated integer")
            b = data[pos]
            pos += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, pos
            if shift > 35:
                raise HpackError("integer too large")

    def _str(self, data: bytes, pos: int) -> tuple[bytes, int]:
        if pos >= len(data):
            raise HpackError("truncated string")
        huffman = data[pos] & 0x80
        length, pos = self._int(data, pos, 7)
        if pos + length > len(data):
            raise HpackError("truncated string")
        raw = data[pos : pos + length]
        pos += length
        return (huffman_decode(raw) if huffman else bytes(raw)), pos

    def decode(self, data: bytes) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        pos = 0
        n = len(data)
        while pos < n:
            b = data[pos]
            if b & 0x80:  # indexed field
                index, pos = self._int(data, pos, 7)
                headers.append(self._lookup(index))
                continue
            if b & 0xC0 == 0x40:  # literal with incremental indexing
                index, pos = self._int(data, pos, 6)
                add = True
            elif b & 0xE0 == 0x20:  # dynamic table size update
                size, pos = self._int(data, pos, 5)
                if size > self._settings_max:
                    raise HpackError("table size update above the limit")
                self._max_size = size
                self._evict()
                continue
            else:  # literal without indexing (0000) or never indexed (0001)
                index, pos = self._int(data, pos, 4)
                add = False
            if index:
                name = self._lookup(index)[0]
            else:
                name, pos = self._str(data, pos)
            value, pos = self._str(data, pos)
            if add:
                self._add(name, value)
            headers.append((name, value))
        return headers
