"""The addresses a server-side `include: remote` may connect to, and the connection kept to them.

On kapal's server the pipeline file is untrusted: an `include: remote` URL must not make the
worker reach its own loopback services, the private network behind it or the cloud's metadata
service (SSRF). `kapal run` on a laptop does not use this module (the user's own machine).

Rules (`AddressPolicy.refusal`), applied to every address the host name resolves to:

- refused: loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16, fc00::/7),
  link-local (169.254.0.0/16, with the metadata address 169.254.169.254; fe80::/10),
  unspecified (0.0.0.0, ::), multicast (224/4, ff00::/8), reserved (240/4, ...) and every
  other address that is not globally reachable (100.64/10, documentation ranges, fec0::/10);
- an IPv6 address carrying an IPv4 one (IPv4-mapped ::ffff:a.b.c.d, 6to4 2002::/16, NAT64
  64:ff9b::/96) is judged by that IPv4 address;
- a host name refuses the include when any of its addresses is refused (a name answering one
  public and one private address cannot pick the private one later);
- allowed despite the above: the addresses in the operator's networks and the host names the
  operator lists (`KAPAL_INCLUDE_ALLOWED_HOSTS`: names, addresses or CIDR networks), and the
  origin of `KAPAL_GITLAB_URL` (host and port), which the operator set.

The name is resolved once per connection (`GuardedBackend.connect_tcp`) and the socket connects
to the vetted address itself: there is no second lookup for a rebinding DNS server to answer
differently. TLS still names the URL's host (SNI and certificate check) and the request its
Host header, since only the TCP connect is replaced. Every redirect hop opens its connection
through the same backend, so a redirect to a refused address is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import httpcore

from pipeline.errors import IncludeError

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ALLOWED_HOSTS_SETTING",
    "AddressPolicy",
    "GuardedBackend",
    "guarded_transport",
    "parse_allowed",
]

ALLOWED_HOSTS_SETTING = "KAPAL_INCLUDE_ALLOWED_HOSTS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]
"""Answers the addresses of (host, port), as `socket.getaddrinfo` finds them."""

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives `host` for TCP (in its order, duplicates once)."""
    found: list[str] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        address = str(sockaddr[0]).split("%", 1)[0]  # an IPv6 zone names no other address
        if address not in found:
            found.append(address)
    return found


def parse_allowed(text: str) -> tuple[tuple[IPNetwork, ...], frozenset[str]]:
    """The networks and host names of an allow-list written `10.0.0.0/8, files.internal`.

    ValueError, naming the entry, for one that is neither a network nor a host name.
    """
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    for entry in text.replace(",", " ").split():
        try:
            networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            continue
        except ValueError:
            pass
        name = entry.lower().rstrip(".")
        if (
            not name
            or "/" in name
            or ":" in name
            or not all(
                part and all(c.isalnum() or c in "-_" for c in part) for part in name.split(".")
            )
        ):
            raise ValueError(
                f"{ALLOWED_HOSTS_SETTING}: {entry!r} is neither a host name, an IP address nor "
                "a network like 10.0.0.0/8"
            )
        hosts.add(name)
    return tuple(networks), frozenset(hosts)


class AddressPolicy:
    """Which hosts and addresses a server-side `include: remote` may connect to (rules above).

    Lifecycle: made once per fetcher from the settings; immutable; `vetted` is called per
    connection (from any thread).
    """

    def __init__(
        self,
        *,
        networks: Iterable[IPNetwork] = (),
        hosts: Iterable[str] = (),
        origins: Iterable[tuple[str, int]] = (),
        resolver: Resolver = system_resolver,
    ) -> None:
        self.networks = tuple(networks)
        self.hosts = frozenset(h.lower().rstrip(".") for h in hosts)
        self.origins = frozenset((h.lower().rstrip("."), p) for h, p in origins)
        self.resolver = resolver

    @classmethod
    def from_settings(
        cls, allowed: str, gitlab_url: str = "", *, resolver: Resolver = system_resolver
    ) -> AddressPolicy:
        """The policy of an allow-list setting plus KAPAL_GITLAB_URL's origin (when valid)."""
        from urllib.parse import urlsplit

        networks, hosts = parse_allowed(allowed)
        origins: list[tuple[str, int]] = []
        parts = urlsplit(gitlab_url.strip())
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        if parts.scheme in ("http", "https") and parts.hostname and port:
            origins.append((parts.hostname, port))
        return cls(networks=networks, hosts=hosts, origins=origins, resolver=resolver)

    def refusal(self, address: str) -> str | None:
        """Why `address` may not be connected to (None: it may)."""
        try:
            ip: IPAddress = ipaddress.ip_address(address)
        except ValueError:
            return f"{address!r} is not an IP address"
        if any(ip in network for network in self.networks):
            return None
        judged = _embedded_ipv4(ip) or ip
        if any(judged in network for network in self.networks):
            return None
        kind = _kind(judged)
        if kind is None:
            return None
        shown = address if judged == ip else f"{address} (that is {judged})"
        article = "an" if kind[0] in "aeiou" else "a"
        return f"{shown} is {article} {kind} address"

    def vetted(self, host: str, port: int) -> list[str]:
        """The addresses `host` resolves to, all allowed; IncludeError saying which is not.

        The resolver is asked once: connect to these, never to the name again.
        """
        name = host.lower().strip("[]").rstrip(".")
        try:
            addresses = [str(ipaddress.ip_address(name))]
        except ValueError:
            try:
                addresses = self.resolver(name, port)
            except OSError as exc:  # offline, as httpx says it: the cached copy may serve
                raise httpcore.ConnectError(f"the host {host} cannot be resolved ({exc})") from None
        if not addresses:
            raise httpcore.ConnectError(f"the host {host} has no address")
        if name in self.hosts or (name, port) in self.origins:
            return addresses
        for address in addresses:
            problem = self.refusal(address)
            if problem is not None:
                named = "" if address == name else f"{host} resolves to "
                raise IncludeError(
                    f"refused: {named}{problem}; kapal's server fetches includes only from "
                    f"public addresses (an operator lists internal hosts or networks in "
                    f"{ALLOWED_HOSTS_SETTING})"
                )
        return addresses


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64), or None."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _kind(ip: IPAddress) -> str | None:
    """The class of address that makes `ip` refused, or None for a public one."""
    if ip.is_loopback:
        return "loopback"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_reserved:
        return "reserved"
    if ip.is_private or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local):
        return "private"
    if not ip.is_global:
        return "non-public"
    return None


class GuardedBackend(httpcore.NetworkBackend):
    """An httpcore network backend that connects only to addresses `policy` vets.

    Lifecycle: one per transport; `connect_tcp` is called for each new connection (redirect
    hops included), resolves the host once and connects to the first vetted address that
    answers. TLS is started by httpcore on the returned stream with the URL's host name.
    """

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """A stream to a vetted address of `host` (IncludeError when it has none allowed)."""
        last: Exception | None = None
        for address in self.policy.vetted(host, port):
            try:
                return self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        """Refused: an include is fetched over TCP only."""
        raise IncludeError("a Unix socket is not a place an include is fetched from")

    def sleep(self, seconds: float) -> None:
        """Sleep (httpcore's retry pause)."""
        self._inner.sleep(seconds)


def guarded_transport(policy: AddressPolicy) -> httpx.HTTPTransport:
    """An httpx transport whose connections go through `GuardedBackend(policy)` (no proxy)."""
    import httpx

    transport = httpx.HTTPTransport()  # the environment's CA files; proxies are the client's
    # httpx builds its pool without a way to name the network backend: the same pool with ours
    ssl_context = transport._pool._ssl_context
    transport._pool = httpcore.ConnectionPool(
        ssl_context=ssl_context, network_backend=GuardedBackend(policy)
    )
    return transport
