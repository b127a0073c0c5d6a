"""Calling URLs that users or businesses gave us, without being turned against our own network.

Used by :mod:`superapp.core.webhooks`; fit for any server-side request to a third-party URL.

* :func:`parse_http_url`: an absolute http(s) URL with a host, printable ASCII.
* :func:`resolve_host` + :func:`check_public`: the addresses a host resolves to, and a refusal
  when any of them is not public (loopback, RFC 1918, link-local such as the cloud metadata
  service, CGNAT, unspecified, multicast, reserved; IPv4-mapped and 6to4 forms unwrapped).
* :func:`pinned_targets`: the request aimed at the checked addresses themselves, the host name
  kept for ``Host``, TLS SNI and certificate verification, so DNS rebinding between check and
  connect cannot reach an internal address.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any
from urllib.parse import SplitResult, urlsplit

from django.utils.translation import gettext_lazy as _

MAX_URL_LENGTH = 2048
MAX_ADDRESSES_TRIED = 3

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class InvalidUrl(ValueError):
    """Not an absolute http(s) URL we can call; ``str()`` is a translated message."""


class HostRefused(Exception):
    """The host cannot be called: ``code`` is ``dns_error`` or ``private_address``."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


def _split(url: str) -> SplitResult:
    """``urlsplit``, whose ``ValueError`` (``http://[::1``, ``http://a]b.com/``: "Invalid IPv6
    URL") becomes :class:`InvalidUrl`, a clear 400 for callers, never a 500."""
    try:
        return urlsplit(url)
    except ValueError:
        raise InvalidUrl(_("The URL's host is not valid (check its brackets).")) from None


def parse_http_url(url: Any) -> SplitResult:
    """An absolute http(s) URL with a host and a valid port, in printable ASCII (punycode hosts).

    Raises:
        InvalidUrl: anything else.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidUrl(_("Enter an http or https URL of at most 2048 characters."))
    if not url.isascii() or any(c.isspace() or not c.isprintable() for c in url):
        raise InvalidUrl(_("The URL may contain only printable ASCII characters (punycode hosts)."))
    parts = _split(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidUrl(_("Only http and https URLs can be called."))
    try:
        port = parts.port
    except ValueError:
        port = 0
    if not parts.hostname or port == 0:
        raise InvalidUrl(_("The URL needs a host (and a valid port, if any)."))
    return parts


def port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme.lower() == "https" else 80)


def is_public_address(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is not None:
            address = embedded
    return address.is_global and not address.is_multicast


def literal_address(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve_host(host: str, port: int) -> list[Address]:
    """The addresses ``host`` resolves to, in the resolver's order (a literal IP is itself).

    Raises:
        HostRefused: ``dns_error``.
    """
    literal = literal_address(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise HostRefused("dns_error", str(exc)[:150]) from exc
    addresses: list[Address] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostRefused("dns_error", "no address")
    return addresses


def check_public(host: str, addresses: list[Address]) -> None:
    """Raises ``HostRefused("private_address")`` unless every address is public."""
    private = [str(a) for a in addresses if not is_public_address(a)]
    if private:
        raise HostRefused("private_address", f"{host} resolves to {', '.join(private[:3])}")


def pinned_targets(url: str, *, allow_private: bool) -> tuple[list[str], dict[str, str], dict[str, Any]]:
    """Resolve the host once, check every address, and aim the request at the checked ones.

    Returns the URL rewritten for each address to try in turn (at most ``MAX_ADDRESSES_TRIED``, in
    the resolver's order: the next one is for when one cannot be connected to, e.g. an IPv6
    address without an IPv6 route), the ``Host`` header, and the httpx request extensions
    (``sni_hostname`` for https: the name the certificate is verified against). Send each with
    its own client (a connection to an IP must not be reused for another host name).

    Raises:
        InvalidUrl: ``url`` cannot be parsed (it should have been checked by :func:`parse_http_url`).
        HostRefused: the host does not resolve, or (unless ``allow_private``) resolves to a
            non-public address.
    """
    parts = _split(url)
    host = parts.hostname or ""
    addresses = resolve_host(host, port_of(parts))
    if not allow_private:
        check_public(host, addresses)
    userinfo, at, host_port = parts.netloc.rpartition("@")
    targets = []
    for address in addresses[:MAX_ADDRESSES_TRIED]:
        ip_host = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{userinfo}{at}{ip_host}" + (f":{parts.port}" if parts.port else "")
        targets.append(parts._replace(netloc=netloc).geturl())
    extensions: dict[str, Any] = {}
    if parts.scheme.lower() == "https":
        extensions["sni_hostname"] = host
    return targets, {"Host": host_port}, extensions


def redacted_url(url: str) -> str:
    """Scheme, host, port and path of ``url``: no credentials, no query string (it may hold a
    token). For logs and lists; one that cannot be parsed is shown as ``(invalid URL)``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid URL)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
