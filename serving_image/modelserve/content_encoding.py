"""Request bodies sent with `Content-Encoding: gzip` or `deflate`, decompressed within a limit.

A gzip stream may hold several members one after the other (RFC 1952 2.2: `cat a.gz b.gz` is a
valid gzip file, and streaming compressors write one member per flush); all of them are the
body, so decoding goes on member after member. The size limit applies to the whole decompressed
body, so neither a bomb nor a chain of small members gets past it.
"""

from __future__ import annotations

import zlib
from typing import Final

from .errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

IDENTITY: Final = (b"identity", b"")
_GZIP_OR_ZLIB: Final = 47  # wbits: a gzip or zlib header, detected


def decompress(body: bytes, encoding: bytes, *, limit: int) -> bytes:
    """`body` decoded per its Content-Encoding value; raises ServeError (400, 413, 415)."""
    encoding = encoding.strip().lower()
    if encoding in IDENTITY:
        return body
    if encoding not in {b"gzip", b"deflate"}:
        raise UnsupportedMediaTypeError(f"unsupported Content-Encoding {encoding.decode()!r}")
    name = encoding.decode()
    pieces: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits=_GZIP_OR_ZLIB)
        try:
            piece = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise BadRequestError(f"cannot decompress the {name} body: {exc}") from None
        size += len(piece)
        if size > limit:
            raise PayloadTooLargeError(f"decompressed body exceeds the limit of {limit} bytes")
        pieces.append(piece)
        if not inflater.eof:
            raise BadRequestError(f"the {name} body is truncated")
        rest = inflater.unused_data
        if not rest or encoding != b"gzip":
            break
    if rest:
        raise BadRequestError(f"the {name} body has data after its end")
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
