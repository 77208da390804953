"""The SSRF address policy, pure (``hub.http.is_forbidden``): private, loopback,
link-local, reserved and translated addresses are refused unless ``delivery.allowed_networks``
opens them. The guard on the wire (resolver and socket): tests/integration/
test_webhook_handler.py and test_no_redirects.py."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.http import is_forbidden

FORBIDDEN = ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1",
             "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1", "239.1.2.3",
             "240.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fe80::1%eth0",
             "fc00::1", "fd12:3456::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
             "64:ff9b::7f00:1", "2002:7f00:1::1", "not-an-ip"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("ip", FORBIDDEN)
def test_non_public_addresses_are_forbidden(ip: str) -> None:
    assert is_forbidden(ip)
    assert is_forbidden(ip, ["8.8.8.0/24"])


@pytest.mark.parametrize("ip", PUBLIC)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert not is_forbidden(ip)


@given(st.ip_addresses(network="127.0.0.0/8") | st.ip_addresses(network="10.0.0.0/8")
       | st.ip_addresses(network="192.168.0.0/16") | st.ip_addresses(network="169.254.0.0/16"))
def test_private_ipv4_and_its_mapped_form_open_only_when_allowed(ip: ipaddress.IPv4Address
                                                                 ) -> None:
    mapped = ipaddress.IPv6Address(f"::ffff:{ip}")
    assert is_forbidden(ip) and is_forbidden(mapped)
    net = f"{ip}/32"
    assert not is_forbidden(ip, [net]) and not is_forbidden(mapped, [net])
    assert not is_forbidden(str(ip), ["0.0.0.0/0"])


def test_allowed_networks_of_the_other_family_do_not_open() -> None:
    assert is_forbidden("::1", ["127.0.0.0/8"])
    assert not is_forbidden("::1", ["::1/128"])
    assert is_forbidden("10.0.0.1", ["::/0"])
