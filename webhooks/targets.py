"""Where a webhook may send (docs/webhooks.md, docs/security.md): an http or https URL whose host
resolves only to public addresses. Loopback, private, link-local and other non-public addresses
are refused unless PADDOCK_WEBHOOK_ALLOW_PRIVATE is on; unspecified, multicast and reserved ones
always are. A webhook would otherwise turn the workers into a proxy onto Paddock's own network
(its database, Redis, a cloud's metadata service at 169.254.169.254).

The check runs when a webhook is created and again before every attempt, on every address the
host resolves to (one bad address refuses the target); the attempt then connects to an address
checked at that moment (webhooks/sending.py), never resolving the name again, so a name that
answers a public address to the check and a private one to the connection (DNS rebinding) cannot
steer it."""

import ipaddress
import socket
import unicodedata
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from console.errors import InvalidInput

MAX_URL = 500
DEFAULT_PORTS = {"http": 80, "https": 443}
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# What makes an address a refused target, in the order it is named, and whether
# PADDOCK_WEBHOOK_ALLOW_PRIVATE allows it (a test's receiver on 127.0.0.1, a receiver on the LAN).
KINDS = [("unspecified", "an unspecified", False), ("loopback", "a loopback", True),
         ("link_local", "a link-local", True), ("multicast", "a multicast", False),
         ("reserved", "a reserved", False), ("private", "a private", True)]


class TargetRefused(InvalidInput):
    """The URL, or an address its host resolves to, is not allowed: refused, never retried."""


class TargetUnresolved(InvalidInput):
    """The host does not resolve now: refused at creation, retried at delivery."""


@dataclass(frozen=True)
class Target:
    """A checked URL: the host as named (the Host header, the TLS name) and the addresses it
    resolved to, each allowed, in the resolver's order."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def tls(self) -> bool:
        return self.scheme == "https"


def split_url(url: str) -> tuple[str, str, int, str]:
    """The scheme, host (IDNA), port and path with query of a webhook URL; TargetRefused naming
    what is wrong with it."""
    if len(url) > MAX_URL:
        raise TargetRefused(f"'url' must be at most {MAX_URL} characters (it has {len(url)})")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in url):
        raise TargetRefused("'url' must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # an unclosed '[' of an IPv6 address, a port out of range
        raise TargetRefused("'url' is not a valid URL: https://hooks.example.com/paddock") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not url.lower().startswith(("http://", "https://")):
        raise TargetRefused("'url' must start with http:// or https://")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("'url' must not carry a user or password: a receiver checks the signature instead")
    if parts.fragment:
        raise TargetRefused("'url' must not have a #fragment")
    if not parts.hostname:
        raise TargetRefused("'url' must name a host: https://hooks.example.com/paddock")
    if port == 0:
        raise TargetRefused("'url' is not a valid URL: https://hooks.example.com/paddock")
    try:
        host = parts.hostname.encode("idna").decode("ascii")
    except UnicodeError:
        raise TargetRefused(f"'url' names a host that is not a valid name: '{parts.hostname}'") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or DEFAULT_PORTS[scheme], path


def resolve(host: str, port: int) -> list[Address]:
    """Every address the host resolves to, without repeats, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TargetUnresolved(f"webhook target {host} does not resolve: {reason}") from None
    found: list[Address] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])  # drop an IPv6 scope id
            if address not in found:
                found.append(address)
    if not found:
        raise TargetUnresolved(f"webhook target {host} does not resolve to an IP address")
    return found


def address_kind(address: Address) -> tuple[str, bool] | None:
    """Why an address is no webhook target ('a loopback', ...) and whether
    PADDOCK_WEBHOOK_ALLOW_PRIVATE allows it anyway; None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 reaches 127.0.0.1
    for attribute, kind, allowable in KINDS:
        if getattr(address, f"is_{attribute}"):
            return kind, allowable
    if not address.is_global:  # 100.64.0.0/10 (carrier-grade NAT) and the like
        return "a non-public", True
    return None


def refusal(host: str, address: Address, *, allow_private: bool) -> str | None:
    """The message refusing `host` for this address it resolves to, or None when it is allowed."""
    found = address_kind(address)
    if found is None:
        return None
    kind, allowable = found
    if allowable and allow_private:
        return None
    try:
        literal = ipaddress.ip_address(host) == address
    except ValueError:
        literal = False
    what = f"{host} is {kind} address" if literal else f"{host} resolves to {address}, {kind} address"
    if not allowable:
        return f"webhook target {what}, which is never allowed"
    return f"webhook target {what}; set PADDOCK_WEBHOOK_ALLOW_PRIVATE=1 to allow it"


def checked_target(url: str, *, allow_private: bool | None = None) -> Target:
    """The URL split, its host resolved and every address checked (PADDOCK_WEBHOOK_ALLOW_PRIVATE
    unless `allow_private` says); TargetRefused or TargetUnresolved with the reason."""
    scheme, host, port, path = split_url(url)
    addresses = resolve(host, port)
    allow = settings.PADDOCK_WEBHOOK_ALLOW_PRIVATE if allow_private is None else allow_private
    for address in addresses:
        message = refusal(host, address, allow_private=allow)
        if message is not None:
            raise TargetRefused(message)
    return Target(scheme, host, port, path, tuple(str(address) for address in addresses))
