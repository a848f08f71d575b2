"""The firewall of `"nat"` sandboxes: the host's addresses, the nftables script, the allow-list.

tests/security/test_network.py plays the attacks against real sandboxes; these check the parts:
the addresses read from /proc, a script nft accepts, and `KAPAL_JOB_ALLOWED_NETWORKS`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.errors import RunnerError
from runner.runtime.firewall import LINK_LOCAL, host_addresses, ruleset
from runner.runtime.policy import allowed_networks
from runner.settings_env import EnvSettings

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
     |-- 198.51.100.0
        /24 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
           |-- 192.0.2.2
              /32 host LOCAL
"""

IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
"""


def test_host_addresses_from_proc(tmp_path: Path) -> None:
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "if_inet6").write_text(IF_INET6)
    # loopback aside; a local route's whole prefix (AnyIP); each address once; broadcast too
    assert host_addresses(tmp_path) == [
        "192.0.2.2/32",
        "192.0.2.255/32",
        "198.51.100.0/24",
        "fd00:0000:0000:0000:0000:0000:0000:0002/128",
    ]


def test_host_addresses_without_ipv6(tmp_path: Path) -> None:
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    assert "192.0.2.2/32" in host_addresses(tmp_path)


def test_this_host_addresses_are_found() -> None:
    found = host_addresses()
    assert not any(address.startswith("127.") for address in found)
    assert all("/" in address for address in found)


def _nft_accepts(script: str) -> subprocess.CompletedProcess[str]:
    nft = shutil.which("nft") or "/usr/sbin/nft"
    # --check: parsed and validated by the kernel, applied nowhere; in a namespace of its own
    return subprocess.run(
        ["unshare", "--net", nft, "--check", "-f", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "allowed", [(), ("192.0.2.2/32",), ("10.0.0.0/8", "10.1.0.0/16", "fd00::/8")]
)
def test_ruleset_loads(allowed: tuple[str, ...]) -> None:
    script = ruleset([*LINK_LOCAL, "169.254.169.254/32", *host_addresses()], allowed)
    done = _nft_accepts(script)
    assert done.returncode == 0, done.stderr + script


def test_ruleset_accepts_allowed_before_rejecting() -> None:
    rules = ruleset(["169.254.0.0/16", "192.0.2.2/32"], ["169.254.169.254/32"]).splitlines()
    accept = rules.index("\t\tip daddr @allowed_ip accept")
    assert accept < min(i for i, line in enumerate(rules) if "reject" in line)
    assert "allowed_ip6" not in "\n".join(rules)  # no empty set


def test_allowed_networks_normalized() -> None:
    assert allowed_networks("") == ()
    assert allowed_networks(" 192.0.2.10 , 10.20.3.4/16,,fd00::1/8") == (
        "192.0.2.10/32",
        "10.20.0.0/16",
        "fd00::/8",
    )


def test_allowed_networks_reach_the_policy() -> None:
    settings = EnvSettings.from_environ({"KAPAL_JOB_ALLOWED_NETWORKS": "192.0.2.10/32"})
    assert settings.container_policy().allowed_networks == ("192.0.2.10/32",)


@pytest.mark.parametrize("text", ["nope", "192.0.2.300/32", "10.0.0.0/33", "10.0.0.0/8;rm"])
def test_allowed_networks_refused(text: str) -> None:
    with pytest.raises(RunnerError, match=r"KAPAL_JOB_ALLOWED_NETWORKS: .* write CIDRs"):
        allowed_networks(text)


@given(st.text(max_size=60))
def test_allowed_networks_never_crash(text: str) -> None:
    # Whatever an operator writes: CIDRs nft can take (digits, dots, colons, a slash) or an error.
    try:
        found = allowed_networks(text)
    except RunnerError:
        return
    for network in found:
        assert set(network) <= set("0123456789abcdef.:/"), network
        assert "/" in network
