"""Webhook targets: public addresses only unless private targets are allowed (no network needed)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp.resolver import DefaultResolver

from actors.webhook_targets import PublicResolver, is_public, literal_refusal, refusal


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.9", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("not-an-ip", False),
    ],
)
def test_only_global_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(address) is public


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "http://localhost:9000/x",
        "http://api.localhost/x",
        "http://10.0.0.5/x",
    ],
)
def test_private_literals_and_localhost_names_are_refused_with_the_setting_named(url: str) -> None:
    reason = literal_refusal(url)
    assert reason is not None and "PULSE_CMS__WEBHOOK_PRIVATE_TARGETS" in reason
    assert asyncio.run(refusal(url)) == reason


def test_public_literals_pass_without_a_lookup() -> None:
    assert literal_refusal("https://93.184.216.34/hook") is None
    assert asyncio.run(refusal("https://93.184.216.34/hook")) is None


def test_resolver_refuses_a_name_with_only_private_addresses() -> None:
    async def run() -> None:
        resolver = PublicResolver(DefaultResolver())
        try:
            with pytest.raises(OSError, match="non-public"):
                await resolver.resolve("localhost", 80)
        finally:
            await resolver.close()

    asyncio.run(run())
