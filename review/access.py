"""Who may see and who may judge: the identity proxy's headers, believed only from the
proxy's addresses, and the forms' tokens (a form posted from elsewhere carries none)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from review.settings import AuthSettings

TOKEN_AGE_S = 12 * 3600  # a page left open over a shift still posts


@dataclass(frozen=True)
class Who:
    user: str
    judge: bool


class RefusedError(Exception):
    """The request is refused: `status` 401 (no identity) or 403 (not believed)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def identify(auth: AuthSettings, peer: str | None, header: Callable[[str], str | None]) -> Who:
    """The user the proxy names, and whether they judge; RefusedError when the request did not
    come from a trusted proxy (`peer`: its address) or names nobody (`header`: a request
    header's value by its name)."""
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        raise RefusedError(403, "the request's origin is unknown") from None
    if not any(address in network for network in auth.trusted_proxies):
        raise RefusedError(403, f"{address} is not the identity proxy: open the page through it")
    user = (header(auth.user_header) or "").strip()
    if not user:
        raise RefusedError(401, f"the identity proxy named no user ({auth.user_header})")
    groups = {g.strip() for g in (header(auth.groups_header) or "").split(",")}
    return Who(user, auth.judge_group in groups)


class FormKeys:
    """Signs a user's forms: a token is the time it was made and a MAC of user and time."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def token(self, user: str, now: float | None = None) -> str:
        made = int(time.time() if now is None else now)
        return f"{made}.{self._mac(user, made)}"

    def valid(self, user: str, token: str, now: float | None = None) -> bool:
        made_text, _, mac = token.partition(".")
        if not made_text.isdigit():
            return False
        made = int(made_text)
        age = (time.time() if now is None else now) - made
        return 0 <= age <= TOKEN_AGE_S and hmac.compare_digest(mac, self._mac(user, made))

    def _mac(self, user: str, made: int) -> str:
        return hmac.new(self._key, f"{user}\n{made}".encode(), hashlib.sha256).hexdigest()
