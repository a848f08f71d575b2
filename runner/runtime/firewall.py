"""The firewall of a `"nat"` sandbox: nftables rules keeping jobs off the host and link-local.

slirp4netns turns a job's packets into sockets of its own in the host's namespace, so without
rules a job reaches whatever the host reaches: the host's own non-loopback addresses (a database
or an API of kapal's bound to 0.0.0.0) and link-local ones (a cloud's metadata service at
169.254.169.254 hands out the machine's credentials). Before slirp4netns or any container of the
sandbox starts, `install_firewall` loads one nftables table into the sandbox's namespace (one
`nft -f -` run, in a thread that joined the namespace) rejecting, on the way out, traffic to

- 169.254.0.0/16 and fe80::/10 (link-local: metadata services);
- every address the host has at that moment (local and broadcast routes of
  /proc/thread-self/net/fib_trie, the addresses in /proc/thread-self/net/if_inet6), loopback
  aside: 127.0.0.0/8 in the sandbox is the sandbox's own `lo`;

except the operator's `allowed` networks (`KAPAL_JOB_ALLOWED_NETWORKS`), which come first. TCP
is refused with a reset, the rest with ICMP "administratively prohibited": tools fail at once
instead of waiting for a timeout. The job cannot lift the rules: its containers have neither
CAP_NET_ADMIN (nftables) nor CAP_NET_RAW (raw frames written to the tap device would pass
beneath them). So that `ping` still works without CAP_NET_RAW, the namespace lets every group
open ICMP datagram sockets (net.ipv4.ping_group_range). Whatever goes wrong here fails the
sandbox: a job never runs without its rules.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from runner.errors import ContainerRuntimeError

LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
_NFT_FALLBACK = "/usr/sbin/nft"  # Debian's, for a PATH without the sbin directories
_PING_GROUP_RANGE = "0 2147483647"  # every group may open ICMP datagram ("ping") sockets
_NFT_TIMEOUT = 10.0


def host_addresses(proc_net: Path = Path("/proc/thread-self/net")) -> list[str]:
    """The calling thread's namespace's addresses (as CIDRs), loopback aside.

    IPv4 from the local and broadcast routes in fib_trie (a local route may cover a whole
    prefix), IPv6 from if_inet6. Both files are plain text the kernel writes; reading them costs
    a fraction of running `ip`.
    """
    found: dict[str, None] = {}  # ordered and deduplicated (fib_trie lists each table)
    address = ""
    for line in (proc_net / "fib_trie").read_text().splitlines():
        words = line.split()
        if words[:1] == ["|--"] and len(words) == 2:
            address = words[1]
        elif (
            len(words) == 3
            and words[0].startswith("/")
            and words[2] in ("LOCAL", "BROADCAST")
            and address
            and not address.startswith("127.")
        ):
            found[f"{address}{words[0]}"] = None
    inet6 = proc_net / "if_inet6"
    if inet6.exists():  # absent when the kernel has IPv6 off
        for line in inet6.read_text().splitlines():
            words = line.split()
            if not words or len(words[0]) != 32 or words[-1] == "lo":
                continue
            hexa = words[0]
            found[":".join(hexa[i : i + 4] for i in range(0, 32, 4)) + "/128"] = None
    return list(found)


def ruleset(blocked: Iterable[str], allowed: Iterable[str] = ()) -> str:
    """The nftables script: `allowed` networks accepted, then `blocked` ones rejected, on output."""
    sets: list[str] = []
    rules: list[str] = []
    for family, kind, icmp in (("ip", "ipv4_addr", "icmp"), ("ip6", "ipv6_addr", "icmpv6")):
        six = family == "ip6"
        allow = [net for net in allowed if (":" in net) == six]
        block = [net for net in blocked if (":" in net) == six]
        for name, elements in ((f"allowed_{family}", allow), (f"blocked_{family}", block)):
            if elements:
                sets.append(
                    f"\tset {name} {{ type {kind}; flags interval; auto-merge; "
                    f"elements = {{ {', '.join(elements)} }} }}"
                )
        if allow:
            rules.append(f"\t\t{family} daddr @allowed_{family} accept")
        if block:
            rules.append(
                f"\t\t{family} daddr @blocked_{family} meta l4proto tcp reject with tcp reset"
            )
            rules.append(
                f"\t\t{family} daddr @blocked_{family} reject with {icmp} type admin-prohibited"
            )
    return (
        "table inet kapal {\n"
        + "".join(line + "\n" for line in sets)
        + "\tchain output {\n\t\ttype filter hook output priority filter; policy accept;\n"
        + "".join(line + "\n" for line in rules)
        + "\t}\n}\n"
    )


def _nft() -> str:
    found = shutil.which("nft") or (_NFT_FALLBACK if os.access(_NFT_FALLBACK, os.X_OK) else None)
    if found is None:
        raise ContainerRuntimeError(
            "jobs' networks are firewalled with nftables (to keep them off the host's addresses "
            "and the cloud metadata service), and `nft` is not installed: apt-get install "
            "nftables (or give the job `network: none`)"
        )
    return found


def install_firewall(pin: Path, allowed: Sequence[str] = ()) -> None:
    """Load the sandbox's rules into the namespace pinned at `pin`; ContainerRuntimeError if not.

    Call it from a thread in the host's namespace (whose addresses are blocked), before
    slirp4netns and the sandbox's containers start.
    """
    from runner.runtime.usernet import run_in_network

    nft = _nft()
    try:
        blocked = [*LINK_LOCAL, *host_addresses()]
    except OSError as err:
        raise ContainerRuntimeError(
            f"cannot list the host's addresses to keep jobs off them: {err}"
        ) from err
    script = ruleset(blocked, allowed)

    def load() -> subprocess.CompletedProcess[bytes]:
        # A child made by this thread starts in the namespace the thread joined.
        done = subprocess.run(
            [nft, "-f", "-"],
            input=script.encode(),
            capture_output=True,
            timeout=_NFT_TIMEOUT,
            check=False,
        )
        if done.returncode == 0:
            Path("/proc/sys/net/ipv4/ping_group_range").write_text(_PING_GROUP_RANGE)
        return done

    try:
        done = run_in_network(pin, load)
    except (OSError, subprocess.SubprocessError) as err:
        raise ContainerRuntimeError(f"cannot firewall the job's network: {err}") from err
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        raise ContainerRuntimeError(
            "cannot firewall the job's network (nft -f failed"
            + (f": {said[0]}" if said else f" with code {done.returncode}")
            + "): the kernel needs nf_tables with reject support (modprobe nf_tables "
            "nft_reject_inet); a job does not run on a network that reaches the host's "
            "addresses. Give the job `network: none` until then"
        )
