"""Who may press the UI's buttons: same origin, a CSRF token, and a token off loopback.

The actions (refresh a key, roll back, reload) change stored state, so a request must:

1. come from the UI's own origin (``Origin`` / ``Sec-Fetch-Site``), never another site;
2. carry the CSRF token the UI page was served with (``X-Defstate-CSRF``);
3. when serving on a loopback address, name a loopback host (``Host``), so a DNS-rebinding
   page cannot pose as the UI;
4. when ``DEFSTATE_UI_TOKEN`` is set, carry it (``Authorization: Bearer TOKEN``). Serving on
   any other address without a configured token, actions are refused outright: anyone who can
   reach the port could otherwise press them.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

TOKEN_ENV = "DEFSTATE_UI_TOKEN"
CSRF_HEADER = "x-defstate-csrf"


def is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` and ``::1`` (with or without brackets)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(host_header: str) -> str:
    return urlsplit(f"//{host_header}").hostname or ""


@attrs.frozen
class Refusal:
    """Why an action was refused, and the HTTP status that says so."""

    status: int
    message: str


@attrs.define
class ActionGuard:
    """Checks one action request; ``check`` returns a ``Refusal`` or None (allowed)."""

    bind_host: str
    token: str | None = attrs.field(factory=lambda: os.environ.get(TOKEN_ENV) or None)
    csrf_token: str = attrs.field(factory=lambda: secrets.token_urlsafe(32))

    @property
    def enabled(self) -> bool:
        """Actions are possible at all: on loopback, or with a configured token."""
        return self.token is not None or is_loopback(self.bind_host)

    def check(self, scheme: str, headers: Mapping[str, str]) -> Refusal | None:
        host = headers.get("host", "")
        cross_site = check_same_origin(scheme, headers)
        if cross_site is not None:
            return cross_site
        if not self.enabled:
            return Refusal(
                403,
                f"actions are disabled: serving on {self.bind_host}, which is not a loopback "
                f"address, and no token is configured (set {TOKEN_ENV})",
            )
        if is_loopback(self.bind_host) and not is_loopback(_hostname(host)):
            return Refusal(403, f"refused: Host {host!r} is not a loopback name")
        if not hmac.compare_digest(headers.get(CSRF_HEADER, ""), self.csrf_token):
            return Refusal(403, "refused: missing or wrong CSRF token (reload the page)")
        if self.token is not None:
            given = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return Refusal(401, f"refused: this action needs the token ({TOKEN_ENV})")
        return None


def check_same_origin(scheme: str, headers: Mapping[str, str]) -> Refusal | None:
    """Refuse a browser request sent by another site. Clients that are not browsers send
    neither header and pass (they cannot be made to send a request by a page)."""
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return Refusal(403, f"refused: a {fetch_site} request (only the UI's own pages may post)")
    origin = headers.get("origin")
    if origin is not None and origin != f"{scheme}://{headers.get('host', '')}":
        return Refusal(403, f"refused: origin {origin!r} is not this server")
    return None
