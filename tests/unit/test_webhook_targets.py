"""Webhook targets: public addresses only unless private targets are allowed (no network: the only
name resolved is ``localhost``, from the hosts file)."""

from __future__ import annotations

import asyncio

import pytest

from cluster.ground.errors import BlockedAddress
from cluster.ground.webhook_targets import literal_refusal, public_resolver, refusal


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://localhost:9000/x",
        "http://api.localhost/x",
        "http://10.0.0.5/x",
        "http://172.16.0.9/x",
        "http://192.168.1.1/x",
        "http://100.64.0.1/x",  # carrier-grade NAT
        "http://0.0.0.0/x",
        "http://224.0.0.1/x",
        "http://[fd00::1]/x",
        "http://[fe80::1]/x",
        "http://[::ffff:127.0.0.1]/x",  # IPv4-mapped loopback
        "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 of 169.254.169.254
        "http://[2002:a00:1::1]/x",  # 6to4 of 10.0.0.1
        "http://2130706433/x",  # legacy numeric 127.0.0.1
        "http://0x7f.1/x",
    ],
)
def test_internal_targets_are_refused_with_the_setting_named(url: str) -> None:
    reason = literal_refusal(url)
    assert reason is not None and "PULSE_CMS__WEBHOOK_PRIVATE_TARGETS" in reason
    assert asyncio.run(refusal(url)) == reason


@pytest.mark.parametrize("url", ["ftp://93.184.216.34/hook", "http:///nohost", "http://[::1/x"])
def test_other_schemes_and_malformed_urls_are_refused(url: str) -> None:
    assert literal_refusal(url) is not None


@pytest.mark.parametrize(
    "url", ["https://93.184.216.34/hook", "https://[2606:2800:220:1:248:1893:25c8:1946]/"]
)
def test_public_literals_pass_without_a_lookup(url: str) -> None:
    assert literal_refusal(url) is None
    assert asyncio.run(refusal(url)) is None


def test_resolver_refuses_a_name_with_only_private_addresses() -> None:
    async def run() -> None:
        resolver = public_resolver()
        try:
            with pytest.raises(BlockedAddress, match="PULSE_CMS__WEBHOOK_PRIVATE_TARGETS") as caught:
                await resolver.resolve("localhost", 80)
            assert isinstance(caught.value, OSError)  # aiohttp reports it as a connection error
        finally:
            await resolver.close()

    asyncio.run(run())
