"""Webhook signatures: what a subscriber verifies (HMAC-SHA256 over "timestamp.body")."""

from __future__ import annotations

import hashlib
import hmac

from cluster.ground.cms_signing import sign, verify

SECRET = "whsec-test-0123456789"
BODY = '{"id":1,"event":"item.published","item_ids":[7],"payload":{"title_ar":"مطر"}}'.encode()
NOW = 1_800_000_000


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == f"sha256={expected}"
    assert sign(SECRET, str(NOW), BODY.decode()) == sign(SECRET, NOW, BODY)  # str and bytes alike


def test_verify_accepts_a_fresh_genuine_signature() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert verify(SECRET, NOW, BODY, signature, now=NOW)
    assert verify(SECRET, str(NOW), BODY, signature, now=NOW + 299)  # header values are strings


def test_verify_refuses_tampered_body_wrong_secret_or_timestamp() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, NOW, BODY.replace(b"[7]", b"[8]"), signature, now=NOW)
    assert not verify("another-secret", NOW, BODY, signature, now=NOW)
    assert not verify(SECRET, NOW + 1, BODY, signature, now=NOW)  # timestamp is part of what is signed
    assert not verify(SECRET, NOW, BODY, signature.replace("sha256=", "sha1="), now=NOW)
    assert not verify(SECRET, "not-a-number", BODY, signature, now=NOW)
    assert not verify(SECRET, NOW, BODY, "", now=NOW)


def test_verify_refuses_old_or_future_timestamps() -> None:
    signature = sign(SECRET, NOW, BODY)
    assert not verify(SECRET, NOW, BODY, signature, now=NOW + 301)  # replayed after 5 minutes
    assert not verify(SECRET, NOW, BODY, signature, now=NOW - 301)  # clock skew the other way
    assert verify(SECRET, NOW, BODY, signature, now=NOW + 3600, tolerance_s=7200)
