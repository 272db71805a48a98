"""Response bodies: which media types each kind of request accepts, charset detection and decoding,
capped gunzip. Pure: no network."""

from __future__ import annotations

import codecs
import re
import zlib

import charset_normalizer

#: How much of a body is searched for <meta charset> or an XML declaration.
CHARSET_PRESCAN_BYTES = 4096

#: Media types acceptable per request kind.
ACCEPTED_TYPES: dict[str, frozenset[str]] = {
    "page": frozenset({"text/html", "application/xhtml+xml"}),
    "feed": frozenset(
        {
            "application/rss+xml",
            "application/atom+xml",
            "application/rdf+xml",  # RSS 1.0
            "application/xml",
            "text/xml",
            "application/feed+json",
            "application/json",
        }
    ),
    "sitemap": frozenset(
        {"application/xml", "text/xml", "application/x-gzip", "application/gzip", "text/plain"}
    ),
}
#: Media types whose body is a gzip file (not a Content-Encoding).
GZIP_TYPES = frozenset({"application/x-gzip", "application/gzip"})


def parse_content_type(header: str | None) -> tuple[str | None, str | None]:
    """``'Text/HTML; charset="UTF-8"'`` -> ``("text/html", "UTF-8")``; missing parts are None."""
    if not header or not header.strip():
        return None, None
    raw_media, _, params = header.partition(";")
    media = raw_media.strip().lower() or None
    charset = None
    for param in params.split(";"):
        key, sep, val = param.partition("=")
        if sep and key.strip().lower() == "charset":
            charset = val.strip().strip("\"'").strip() or None
    return media, charset


def sniffs_as_html(body: bytes) -> bool:
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or any(
        tag in head for tag in (b"<html", b"<head", b"<body")
    )


def _sniffs_as_feed(body: bytes) -> bool:
    head = body[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<?xml", b"<rss", b"<feed", b"<rdf:rdf", b"{"))


def accepts(kind: str, media_type: str | None, body: bytes) -> bool:
    """Whether a response of ``media_type`` (None: no Content-Type) is acceptable for ``kind``."""
    if media_type is None:
        if kind == "page":
            return sniffs_as_html(body)
        return _sniffs_as_feed(body)
    return media_type in ACCEPTED_TYPES.get(kind, frozenset())


def _codec_name(label: str | None) -> str | None:
    if not label:
        return None
    try:
        return codecs.lookup(label.strip()).name
    except LookupError:
        return None


_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)""", re.IGNORECASE)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9_.\-]+)["']""", re.IGNORECASE)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def declared_charset(body: bytes) -> str | None:
    """The charset a document declares about itself: BOM, XML declaration or ``<meta charset>``."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return name
    head = body[:CHARSET_PRESCAN_BYTES]
    for pattern in (_XML_ENCODING, _META_CHARSET):
        match = pattern.search(head)
        if match:
            codec = _codec_name(match.group(1).decode("ascii", errors="ignore"))
            if codec is not None:
                return codec
    return None


def decode_body(body: bytes, header_charset: str | None) -> tuple[str | None, str | None]:
    """``(text, charset)``: BOM, then the header's charset, then the document's own declaration, then
    strict UTF-8, then charset_normalizer. A declared charset decodes with replacement characters; an
    undeclared body that nothing decodes gives ``(None, None)``."""
    if not body:
        return "", None
    bom = next((name for bom, name in _BOMS if body.startswith(bom)), None)
    for candidate in (bom, _codec_name(header_charset), declared_charset(body)):
        if candidate is not None:
            return body.decode(candidate, errors="replace"), candidate
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(body).best()
    if best is None:
        return None, None
    return str(best), _codec_name(best.encoding) or best.encoding


class BodyTooLarge(Exception):
    """Internal signal: a body grew past its cap."""


def gunzip_capped(data: bytes, max_bytes: int) -> bytes:
    """Decompress a gzip file, raising ``BodyTooLarge`` past ``max_bytes`` and ``ValueError`` when corrupt."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise ValueError(f"corrupt gzip data: {exc}") from exc
    if len(out) > max_bytes or decompressor.unconsumed_tail:
        raise BodyTooLarge(max_bytes)
    if not decompressor.eof:
        raise ValueError("truncated gzip data")
    return out
