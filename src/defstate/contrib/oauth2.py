"""OAuth2 client-credentials tokens (RFC 6749 section 4.4) for the HTTP components.

The ``oauth2:`` attribute of :class:`~defstate.contrib.http.HttpCatalogComponent`::

    oauth2:
      token_url: "https://auth.example.com/oauth/token"
      client_id: "{{ env.CATALOG_CLIENT_ID }}"
      client_secret: "{{ env.CATALOG_CLIENT_SECRET }}"
      scope: catalog.read            # optional
      extra_params: {audience: api}  # optional, sent with the token request
      client_auth: basic             # basic (HTTP Basic, the RFC's default) | body

A token is requested when a refresh starts, sent as ``Authorization: Bearer <token>`` on
every page, requested again when ``expires_in`` has (almost) passed, and once more when a
page answers 401 (a rotated or revoked token). The client secret and the token are never
stored, logged or shown: messages mask them, and a response that echoes them is masked too.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import quote, urlencode

import attrs

from defstate.errors import TerminalRefreshError

# a token is renewed this long before the server said it expires (clock skew, slow pages)
EXPIRY_MARGIN_SECONDS: Final = 30.0

TokenPost = Callable[[str, bytes, Mapping[str, str], list[str]], bytes]
"""POST ``(url, form body, headers, secrets to mask)`` and return the response body."""


class OAuth2TokenError(TerminalRefreshError):
    """The token endpoint answered with something that is not a usable bearer token."""


@attrs.define(kw_only=True)
class OAuth2ClientCredentials:
    """Settings of an OAuth2 client-credentials grant (see the module documentation)."""

    token_url: str
    client_id: str
    client_secret: str = attrs.field(repr=False)
    scope: str | None = None
    extra_params: dict[str, str] = attrs.field(factory=dict, repr=False)
    client_auth: Literal["basic", "body"] = "basic"

    @property
    def secrets(self) -> list[str]:
        """What must never be shown: the client secret and the extra parameters' values."""
        return [v for v in (self.client_secret, *self.extra_params.values()) if len(v) >= 4]

    def token_request(self) -> tuple[bytes, dict[str, str]]:
        """The form body and headers of the token request."""
        form = {"grant_type": "client_credentials", **self.extra_params}
        if self.scope:
            form["scope"] = self.scope
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.client_auth == "basic":
            # RFC 6749 2.3.1: both parts form-encoded before Basic encoding
            pair = f"{quote(self.client_id, safe='')}:{quote(self.client_secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        else:
            form |= {"client_id": self.client_id, "client_secret": self.client_secret}
        return urlencode(form).encode(), headers


class BearerTokens:
    """The current access token of one refresh: requested on first use, renewed on expiry."""

    def __init__(self, config: OAuth2ClientCredentials, post: TokenPost) -> None:
        self._config = config
        self._post = post
        self._token: str | None = None
        self._expires_at: float | None = None
        self._issued: list[str] = []  # renewed or revoked tokens stay secret too

    @property
    def secrets(self) -> list[str]:
        """The client's secrets and the tokens handed out so far."""
        return [*self._config.secrets, *self._issued]

    def authorization(self) -> str:
        """The ``Authorization`` header value, requesting a token when needed."""
        expired = self._expires_at is not None and time.monotonic() >= self._expires_at
        if self._token is None or expired:
            self._request()
        return f"Bearer {self._token}"

    def invalidate(self) -> None:
        """Forget the token (the server refused it): the next use requests a new one."""
        self._token = None

    def _request(self) -> None:
        body, headers = self._config.token_request()
        answer = self._post(self._config.token_url, body, headers, self._config.secrets)
        token, expires_in = parse_token_response(answer)
        self._token = token
        self._issued.append(token)
        self._expires_at = (
            None
            if expires_in is None
            else time.monotonic() + max(0.0, expires_in - EXPIRY_MARGIN_SECONDS)
        )


def parse_token_response(body: bytes) -> tuple[str, float | None]:
    """``(access_token, expires_in seconds or None)`` of a token endpoint's JSON answer."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        raise OAuth2TokenError("the token endpoint's answer is not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get("access_token"), str):
        raise OAuth2TokenError("the token endpoint's answer has no access_token")
    token_type = document.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise OAuth2TokenError(f"the token endpoint issued a {token_type!r} token, not a bearer")
    expires_in = document.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)):
        return document["access_token"], None
    return document["access_token"], float(expires_in)
