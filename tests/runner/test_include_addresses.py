"""The server's `include: remote` address policy: which addresses are refused, redirects hop by
hop, one DNS answer per connection (no rebinding), the allow-list and KAPAL_GITLAB_URL's origin."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import IncludeError
from runner.include_addresses import AddressPolicy, parse_allowed
from runner.remote_includes import HttpFetcher
from tests.support.file_server import Files, serve_files

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("::1", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("169.254.169.254", "link-local"),  # the cloud metadata service
    ("169.254.0.1", "link-local"),
    ("fe80::1", "link-local"),
    ("0.0.0.0", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("240.0.0.1", "reserved"),
    ("100.64.0.1", "non-public"),  # carrier-grade NAT
    ("192.0.2.10", "private"),  # documentation (TEST-NET-1)
    ("fec0::1", "private"),  # site-local
    # IPv6 forms carrying a refused IPv4 address
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", "link-local"),  # 6to4 of 169.254.169.254
    ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
]

ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "1.1.1.1"]


@pytest.mark.parametrize(("address", "kind"), REFUSED)
def test_each_class_of_internal_address_is_refused(address: str, kind: str) -> None:
    policy = AddressPolicy()
    problem = policy.refusal(address)
    assert problem is not None and f" {kind} address" in problem
    with pytest.raises(IncludeError, match=f"refused: .*{kind}.*KAPAL_INCLUDE_ALLOWED_HOSTS"):
        policy.vetted(address, 443)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(address) is None
    assert AddressPolicy().vetted(address, 443) == [str(ipaddress.ip_address(address))]


def test_a_name_resolving_to_loopback_is_refused() -> None:
    with pytest.raises(IncludeError, match=r"localhost resolves to (127\.0\.0\.1|::1) .*loopback"):
        AddressPolicy().vetted("localhost", 80)


def test_a_name_with_one_internal_address_among_public_ones_is_refused() -> None:
    policy = AddressPolicy(resolver=lambda host, port: ["8.8.8.8", "10.0.0.7"])
    with pytest.raises(IncludeError, match=r"files\.example resolves to 10\.0\.0\.7"):
        policy.vetted("files.example", 443)


def test_the_allow_list_lets_networks_names_and_the_gitlab_origin_through() -> None:
    policy = AddressPolicy.from_settings(
        "10.1.0.0/16, files.internal 127.0.0.2",
        "https://gitlab.internal:8443/gitlab",
        resolver=lambda host, port: ["192.168.7.7"],
    )
    assert policy.vetted("10.1.2.3", 80) == ["10.1.2.3"]
    assert policy.vetted("::ffff:10.1.2.3", 80) == ["::ffff:a01:203"]
    assert policy.vetted("127.0.0.2", 80) == ["127.0.0.2"]
    assert policy.vetted("files.internal", 80) == ["192.168.7.7"]
    assert policy.vetted("FILES.internal.", 443) == ["192.168.7.7"]
    assert policy.vetted("gitlab.internal", 8443) == ["192.168.7.7"]
    for host, port in [("10.2.0.1", 80), ("127.0.0.1", 80), ("gitlab.internal", 443)]:
        with pytest.raises(IncludeError, match="refused"):
            policy.vetted(host, port)


@pytest.mark.parametrize("entry", ["http://files.internal", "10.0.0.0/33", "a b/c", "x:80"])
def test_a_malformed_allow_list_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="KAPAL_INCLUDE_ALLOWED_HOSTS"):
        parse_allowed(entry)


def test_the_web_settings_refuse_a_malformed_allow_list(tmp_path: Path) -> None:
    from pydantic import ValidationError

    from web.settings import Settings

    with pytest.raises(ValidationError, match="neither a host name"):
        Settings(data_dir=tmp_path, include_allowed_hosts="https://x/")
    allowed = Settings(data_dir=tmp_path, include_allowed_hosts="10.0.0.0/8,files.internal")
    assert allowed.include_allowed_hosts == "10.0.0.0/8,files.internal"


def _fetcher(tmp_path: Path, policy: AddressPolicy) -> HttpFetcher:
    return HttpFetcher(tmp_path / "includes", addresses=policy)


def test_a_loopback_server_is_refused_before_any_request(tmp_path: Path) -> None:
    files = Files(bodies={"/ci.yml": b"job: {script: [x]}\n"})
    with (
        serve_files(files) as port,
        _fetcher(tmp_path, AddressPolicy()) as fetcher,
        pytest.raises(IncludeError, match=r"127\.0\.0\.1 is a loopback address"),
    ):
        fetcher.fetch(f"http://127.0.0.1:{port}/ci.yml")
    assert files.hosts == []  # no connection was made


def test_an_allowed_server_is_fetched_and_cached(tmp_path: Path) -> None:
    files = Files(bodies={"/ci.yml": b"job: {script: [x]}\n"})
    policy = AddressPolicy(networks=[ipaddress.ip_network("127.0.0.1/32")])
    with serve_files(files) as port, _fetcher(tmp_path, policy) as fetcher:
        url = f"http://127.0.0.1:{port}/ci.yml"
        assert fetcher.fetch(url) == b"job: {script: [x]}\n"
    # the server gone, the cached copy answers (a later plan of the same file is offline-safe)
    with _fetcher(tmp_path, policy) as fetcher:
        assert fetcher.fetch(url) == b"job: {script: [x]}\n"


def test_a_redirect_to_a_refused_address_is_refused(tmp_path: Path) -> None:
    inner = Files(bodies={"/secret": b"metadata: {script: [leak]}\n"})
    with serve_files(inner, host="127.0.0.2") as inner_port:
        outer = Files(redirects={"/ci.yml": f"http://127.0.0.2:{inner_port}/secret"})
        with serve_files(outer) as port:
            # 127.0.0.1 stands for an allowed public host; 127.0.0.2 is not allowed
            policy = AddressPolicy(networks=[ipaddress.ip_network("127.0.0.1/32")])
            with (
                _fetcher(tmp_path, policy) as fetcher,
                pytest.raises(IncludeError, match=r"127\.0\.0\.2 is a loopback address"),
            ):
                fetcher.fetch(f"http://127.0.0.1:{port}/ci.yml")
            assert len(outer.hosts) == 1
            assert inner.hosts == []  # the second hop never connected
            # the same redirect with both allowed is followed (the refusal was the policy's)
            both = AddressPolicy(networks=[ipaddress.ip_network("127.0.0.0/30")])
            with _fetcher(tmp_path / "2", both) as fetcher:
                assert fetcher.fetch(f"http://127.0.0.1:{port}/ci.yml").startswith(b"metadata")


def test_the_name_is_resolved_once_and_the_connection_goes_to_the_vetted_address(
    tmp_path: Path,
) -> None:
    """A rebinding DNS server answers an allowed address first and a refused one after."""
    answers = [["127.0.0.1"], ["127.0.0.2"]]
    asked: list[tuple[str, int]] = []

    def rebinding(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return answers[min(len(asked), 2) - 1]

    files = Files(bodies={"/ci.yml": b"job: {script: [x]}\n"})
    policy = AddressPolicy(networks=[ipaddress.ip_network("127.0.0.1/32")], resolver=rebinding)
    with serve_files(files) as port, _fetcher(tmp_path, policy) as fetcher:
        assert fetcher.fetch(f"http://files.example:{port}/ci.yml") == b"job: {script: [x]}\n"
    assert asked == [("files.example", port)]
    # the request named the host as written (Host header), though it went to 127.0.0.1
    assert files.hosts == [f"files.example:{port}"]


def test_an_unresolvable_name_falls_back_to_the_cached_copy(tmp_path: Path) -> None:
    def offline(host: str, port: int) -> list[str]:
        raise OSError("Temporary failure in name resolution")

    policy = AddressPolicy(resolver=offline)
    with (
        _fetcher(tmp_path, policy) as fetcher,
        pytest.raises(IncludeError, match=r"cannot be resolved.*no cached copy"),
    ):
        fetcher.fetch("https://files.example/ci.yml")
    cached = HttpFetcher(tmp_path / "includes")
    cached._store("https://files.example/ci.yml", b"kept: {script: [x]}\n")
    with _fetcher(tmp_path, policy) as fetcher:
        assert fetcher.fetch("https://files.example/ci.yml") == b"kept: {script: [x]}\n"


def test_a_redirect_out_of_http_is_refused(tmp_path: Path) -> None:
    outer = Files(redirects={"/ci.yml": "file:///etc/passwd"})
    policy = AddressPolicy(networks=[ipaddress.ip_network("127.0.0.1/32")])
    with (
        serve_files(outer) as port,
        _fetcher(tmp_path, policy) as fetcher,
        pytest.raises(IncludeError, match="only http and https are"),
    ):
        fetcher.fetch(f"http://127.0.0.1:{port}/ci.yml")


@given(st.ip_addresses(v=4))
def test_an_ipv4_address_and_its_mapped_ipv6_form_are_judged_alike(address: Any) -> None:
    policy = AddressPolicy()
    mapped = ipaddress.IPv6Address(f"::ffff:{address}")
    assert (policy.refusal(str(address)) is None) == (policy.refusal(str(mapped)) is None)
    if policy.refusal(str(address)) is None:
        assert address.is_global and not address.is_multicast


@given(st.ip_addresses())
def test_only_global_unicast_addresses_are_allowed(address: Any) -> None:
    allowed = AddressPolicy().refusal(str(address)) is None
    if allowed:
        assert address.is_global and not address.is_multicast
        assert not (address.is_private or address.is_loopback or address.is_link_local)


@given(st.text(max_size=60))
def test_the_allow_list_parser_answers_any_text_or_says_what_is_wrong(text: str) -> None:
    try:
        networks, hosts = parse_allowed(text)
    except ValueError as exc:
        assert "KAPAL_INCLUDE_ALLOWED_HOSTS" in str(exc)
    else:
        assert all("/" not in h and ":" not in h for h in hosts)
        assert len(networks) + len(hosts) <= len(text.split()) + text.count(",")
