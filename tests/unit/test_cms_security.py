"""CMS security without a server: passwords, tokens, principals, rate limits, body sizes, HTML."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from starlette.types import Message, Receive, Scope, Send

from cluster.ground.passwords import (
    PasswordPolicyError,
    hash_password,
    password_needs_rehash,
    verify_password,
)
from serve_apps.cms.limits import BodySizeLimit, ClientAddress, RateLimits, html_to_text, sanitize_html
from serve_apps.cms.security import InvalidToken, Principal, TokenIssuer

SECRET = "s" * 32
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
#: SIB-200 dev sentence 348 (FLORES-200, CC BY-SA 4.0).
ARABIC = "ينبعث الضوء والحرارة من النجوم بسبب الطاقة الناتجة عن دمج ذرات الهيدروجين"


# ------------------------------------------------------------------------------------------ passwords


def test_password_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery")
    assert hashed.startswith("$argon2id$")
    assert verify_password(hashed, "correct horse battery")
    assert not verify_password(hashed, "correct horse battery!")
    assert hash_password("correct horse battery") != hashed  # salted
    assert not password_needs_rehash(hashed)


def test_verify_survives_broken_hashes() -> None:
    assert not verify_password("not-a-hash", "whatever123")
    assert not verify_password("", "whatever123")
    assert password_needs_rehash("not-a-hash")


@pytest.mark.parametrize("password", ["short", "123456789", " " * 12, "x" * 1025])
def test_password_policy(password: str) -> None:
    with pytest.raises(PasswordPolicyError) as info:
        hash_password(password)
    assert isinstance(info.value, ValueError)
    assert "characters" in str(info.value) or "whitespace" in str(info.value)


def test_password_policy_message_says_the_minimum() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        hash_password("abc")
    assert verify_password(hash_password("ten chars!"), "ten chars!")  # exactly 10 is enough


# --------------------------------------------------------------------------------------------- tokens


def test_access_token_round_trip() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.access_token(3, "editor", now=T0)
    assert issuer.decode_access(token, now=T0 + timedelta(seconds=10)) == Principal("user", 3, "editor")


def test_refresh_token_round_trip() -> None:
    issuer = TokenIssuer(SECRET, refresh_ttl_s=3600)
    token, jti, expires_at = issuer.refresh_token(7, now=T0)
    assert expires_at == T0 + timedelta(hours=1)
    assert issuer.decode_refresh(token, now=T0) == (7, jti)
    assert issuer.refresh_token(7, now=T0)[1] != jti  # a fresh jti each time


def test_expiry_with_and_without_leeway() -> None:
    strict = TokenIssuer(SECRET, access_ttl_s=60, leeway_s=0)
    token = strict.access_token(1, "author", now=T0)
    assert strict.decode_access(token, now=T0 + timedelta(seconds=59)).id == 1
    with pytest.raises(InvalidToken) as info:
        strict.decode_access(token, now=T0 + timedelta(seconds=60))
    assert info.value.reason == "expired"
    lenient = TokenIssuer(SECRET, access_ttl_s=60, leeway_s=5)
    assert lenient.decode_access(token, now=T0 + timedelta(seconds=64)).id == 1
    with pytest.raises(InvalidToken, match="expired"):
        lenient.decode_access(token, now=T0 + timedelta(seconds=65))


def test_refresh_expiry() -> None:
    issuer = TokenIssuer(SECRET, refresh_ttl_s=100, leeway_s=0)
    token, _, _ = issuer.refresh_token(1, now=T0)
    with pytest.raises(InvalidToken) as info:
        issuer.decode_refresh(token, now=T0 + timedelta(seconds=100))
    assert info.value.reason == "expired"


def test_issued_in_the_future_is_refused() -> None:
    issuer = TokenIssuer(SECRET, leeway_s=5)
    token = issuer.access_token(1, "admin", now=T0 + timedelta(minutes=1))
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(token, now=T0)
    assert info.value.reason == "not_yet_valid"


def test_token_types_do_not_mix() -> None:
    issuer = TokenIssuer(SECRET)
    access = issuer.access_token(1, "admin", now=T0)
    refresh, _, _ = issuer.refresh_token(1, now=T0)
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(refresh, now=T0)
    assert info.value.reason == "wrong_type"
    with pytest.raises(InvalidToken) as info:
        issuer.decode_refresh(access, now=T0)
    assert info.value.reason == "wrong_type"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tampered_and_foreign_tokens() -> None:
    issuer = TokenIssuer(SECRET)
    token = issuer.access_token(5, "viewer", now=T0)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = ".".join([header, _b64({**claims, "role": "admin"}), signature])
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(forged, now=T0)
    assert info.value.reason == "bad_signature"

    other = TokenIssuer("o" * 32).access_token(5, "admin", now=T0)
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(other, now=T0)
    assert info.value.reason == "bad_signature"

    unsigned = jwt.encode({**claims, "role": "admin"}, "", algorithm="none")
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(unsigned, now=T0)
    assert info.value.reason == "malformed"

    foreign = TokenIssuer(SECRET, issuer="someone-else").access_token(5, "admin", now=T0)
    with pytest.raises(InvalidToken) as info:
        issuer.decode_access(foreign, now=T0)
    assert info.value.reason == "wrong_issuer"

    for garbage in ("", "abc", "a.b.c"):
        with pytest.raises(InvalidToken) as info:
            issuer.decode_access(garbage, now=T0)
        assert info.value.reason == "malformed"


def test_secret_must_be_long_enough() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        TokenIssuer("s" * 31)
    TokenIssuer(b"\x00" * 32)  # bytes are fine


def test_principals() -> None:
    assert Principal("user", 3, "editor").label == "user:3"
    assert Principal("key", 7, "viewer").label == "key:7"
    assert Principal.anonymous().label == "anonymous"
    assert Principal.anonymous().role is None
    with pytest.raises(ValueError):
        Principal("user", None, "admin")
    with pytest.raises(ValueError):
        Principal("key", 1, "root")
    with pytest.raises(ValueError):
        Principal("anonymous", 1, None)


# ---------------------------------------------------------------------------------------- rate limits


def test_rate_limit_refuses_after_n_and_says_when_to_retry() -> None:
    limits = RateLimits(per_key="5/minute", per_ip="3/minute")
    assert [limits.check(None, "203.0.113.9") for _ in range(3)] == [None, None, None]
    refused = limits.check(None, "203.0.113.9")
    assert refused is not None
    assert 1 <= refused.seconds <= 60
    assert refused.headers == {"Retry-After": str(refused.seconds)}
    assert refused.bucket == "ip:203.0.113.9" and "3 per 1 minute" in refused.message
    assert limits.check("anonymous", "203.0.113.9") is not None  # anonymous is counted by IP


def test_rate_limit_buckets_are_independent() -> None:
    limits = RateLimits(per_key="2/minute", per_ip="1/minute")
    assert limits.check(None, "198.51.100.1") is None
    assert limits.check(None, "198.51.100.1") is not None
    assert limits.check(None, "198.51.100.2") is None  # another IP
    # Authenticated principals count per principal, whatever their IP.
    assert limits.check("user:1", "198.51.100.1") is None
    assert limits.check("user:1", "198.51.100.1") is None
    assert limits.check("user:1", "198.51.100.3") is not None
    assert limits.check("user:2", "198.51.100.1") is None
    assert limits.check("key:1", "198.51.100.1") is None


def test_client_address_from_trusted_proxies_only() -> None:
    addr = ClientAddress()
    # A direct caller is its own address, whatever header it sends.
    assert addr.resolve("203.0.113.9", None) == "203.0.113.9"
    assert addr.resolve("203.0.113.9", "198.51.100.1") == "203.0.113.9"
    # Through a trusted proxy (the ingress on a private address): the nearest untrusted hop, right to left,
    # so a client cannot choose its bucket by prepending addresses.
    assert addr.resolve("10.0.0.5", "198.51.100.1") == "198.51.100.1"
    assert addr.resolve("10.0.0.5", "6.6.6.6, 198.51.100.1, 10.0.0.7") == "198.51.100.1"
    assert addr.resolve("127.0.0.1", "10.1.1.1, 192.168.0.2") == "10.1.1.1"  # all trusted: the first
    assert addr.resolve("::1", "2001:db8::7") == "2001:db8::7"
    # No header, or junk in it: the peer.
    assert addr.resolve("127.0.0.1", None) == "127.0.0.1"
    assert addr.resolve("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert addr.resolve(None, "198.51.100.1") is None
    # Trust is a setting.
    only = ClientAddress(["192.0.2.2"])
    assert only.resolve("192.0.2.2", "198.51.100.1") == "198.51.100.1"
    assert only.resolve("10.0.0.5", "198.51.100.1") == "10.0.0.5"
    with pytest.raises(ValueError, match="trusted_proxies"):
        ClientAddress(["10.0.0.0/33"])


def test_rate_limit_rejects_bad_specs() -> None:
    with pytest.raises(ValueError):
        RateLimits(per_key="lots")


# ------------------------------------------------------------------------------------------ body size


class Recorder:
    """An ASGI ``send`` that keeps what it is given."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def __call__(self, message: Message) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        starts = [m for m in self.messages if m["type"] == "http.response.start"]
        assert len(starts) == 1, self.messages
        return int(starts[0]["status"])

    @property
    def json(self) -> Any:
        return json.loads(
            b"".join(m.get("body", b"") for m in self.messages if m["type"] == "http.response.body")
        )


def receiver(chunks: list[bytes]) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


class EchoApp:
    """Reads the whole body, answers 200 with its length; on a disconnect raises, as Starlette does."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("client disconnected")
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = json.dumps({"size": size}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


def http_scope(content_length: int | None = None) -> dict[str, Any]:
    headers = [] if content_length is None else [(b"content-length", str(content_length).encode())]
    return {"type": "http", "method": "POST", "path": "/v1/cms/items", "headers": headers}


def drive(app: Any, scope: dict[str, Any], chunks: list[bytes]) -> Recorder:
    sent = Recorder()
    asyncio.run(app(scope, receiver(chunks), sent))
    return sent


def test_small_bodies_pass() -> None:
    inner = EchoApp()
    app = BodySizeLimit(inner, max_bytes=1000)
    sent = drive(app, http_scope(1000), [b"x" * 1000])
    assert sent.status == 200 and sent.json == {"size": 1000}
    sent = drive(app, http_scope(), [b"x" * 500, b"x" * 500])  # chunked, exactly at the limit
    assert sent.status == 200 and sent.json == {"size": 1000}


def test_declared_length_over_the_limit_is_refused_before_the_app_runs() -> None:
    inner = EchoApp()
    sent = drive(BodySizeLimit(inner, max_bytes=1000), http_scope(1001), [b"x" * 1001])
    assert inner.calls == 0
    assert sent.status == 413
    error = sent.json["error"]
    assert error["code"] == "payload_too_large"
    assert "1001" in error["message"] and "1000" in error["message"]


def test_streamed_body_over_the_limit_is_refused() -> None:
    inner = EchoApp()
    sent = drive(BodySizeLimit(inner, max_bytes=1000), http_scope(), [b"x" * 400] * 5)
    assert inner.calls == 1
    assert sent.status == 413  # exactly one response, the app's own answer dropped
    assert sent.json["error"]["code"] == "payload_too_large"


def test_a_lying_content_length_is_caught_while_streaming() -> None:
    sent = drive(BodySizeLimit(EchoApp(), max_bytes=1000), http_scope(10), [b"x" * 600, b"x" * 600])
    assert sent.status == 413


def test_other_scopes_pass_through() -> None:
    seen: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    asyncio.run(BodySizeLimit(app, max_bytes=1)({"type": "lifespan"}, receiver([]), Recorder()))
    assert seen == ["lifespan"]


def test_body_limit_in_front_of_fastapi() -> None:
    api = FastAPI()

    @api.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    app = BodySizeLimit(api, max_bytes=1000)

    async def chunks(n: int) -> Any:
        for _ in range(n):
            yield b"y" * 300

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://cms.test") as client:
            small = await client.post("/echo", content=b"z" * 10)
            declared = await client.post("/echo", content=b"z" * 2000)
            streamed = await client.post("/echo", content=chunks(5))
        return small, declared, streamed

    small, declared, streamed = asyncio.run(main())
    assert small.status_code == 200 and small.json() == {"size": 10}
    for response in (declared, streamed):
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"


# ----------------------------------------------------------------------------------------------- HTML


def test_sanitize_strips_scripts_handlers_and_javascript_urls() -> None:
    dirty = (
        '<p onclick="steal()">hi<script>alert(1)</script></p>'
        '<img src="https://cdn.example/a.png" onerror="alert(2)" alt="a">'
        '<a href="javascript:alert(3)">x</a><a href="JaVaScRiPt:alert(4)">y</a>'
        "<style>p { color: red }</style><iframe src='https://evil'></iframe>"
    )
    clean = sanitize_html(dirty)
    lowered = clean.lower()
    for banned in ("<script", "alert", "onerror", "onclick", "javascript:", "<style", "<iframe"):
        assert banned not in lowered, clean
    assert '<img src="https://cdn.example/a.png" alt="a">' in clean


def test_sanitize_keeps_allowed_tags_and_arabic() -> None:
    html = (
        f'<h2>عنوان</h2><p dir="rtl">{ARABIC} <strong>مهم</strong> <em>e</em></p>'
        "<ul><li>one</li></ul><ol><li>two</li></ol><blockquote>q</blockquote>"
        "<figure><img src='/m/1.jpg' alt='صورة'><figcaption>cap</figcaption></figure>"
        "<pre><code>x = 1</code></pre>line<br>break<h3>3</h3><h4>4</h4>"
    )
    clean = sanitize_html(html)
    for kept in (
        "<h2>عنوان</h2>",
        f'<p dir="rtl">{ARABIC} <strong>مهم</strong> <em>e</em></p>',
        "<ul><li>one</li></ul>",
        "<ol><li>two</li></ol>",
        "<blockquote>q</blockquote>",
        '<figure><img src="/m/1.jpg" alt="صورة"><figcaption>cap</figcaption></figure>',
        "<pre><code>x = 1</code></pre>",
        "<br>",
        "<h3>3</h3>",
        "<h4>4</h4>",
    ):
        assert kept in clean, (kept, clean)


def test_sanitize_links() -> None:
    clean = sanitize_html('<a href="https://example.com/x" target="_blank" rel="opener">x</a>')
    assert clean == '<a href="https://example.com/x" rel="noopener noreferrer">x</a>'
    assert 'dir="' not in sanitize_html('<p dir="sideways">x</p>')
    assert sanitize_html("<h1>big</h1><div>d</div>") == "bigd"  # tags outside the list go, text stays


def test_html_to_text() -> None:
    html = (
        "<h2>Title&nbsp;one</h2><p>Fish &amp; chips &lt;3</p><p>next</p>"
        f"<script>var x = 1;</script><style>p{{}}</style><p dir='rtl'>{ARABIC}</p>"
        "<ul><li>a</li><li>b</li></ul>wo<b>rd</b>"
    )
    assert html_to_text(html) == f"Title one Fish & chips <3 next {ARABIC} a b word"
    assert html_to_text("") == ""
    assert html_to_text("plain   text\n\nhere") == "plain text here"
