"""CSRF protection: one random token per session, required on every form post."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping

__all__ = ["FIELD", "csrf_token", "csrf_valid"]

#: Name of the hidden form field.
FIELD = "csrf_token"
_KEY = "csrf"


def csrf_token(session: MutableMapping[str, object]) -> str:
    """The session's token (made on first use)."""
    token = session.get(_KEY)
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session[_KEY] = token
    return token


def csrf_valid(session: MutableMapping[str, object], submitted: str | None) -> bool:
    """Whether ``submitted`` is the session's token (constant-time comparison)."""
    token = session.get(_KEY)
    if not isinstance(token, str) or not submitted:
        return False
    return hmac.compare_digest(token.encode(), str(submitted).encode())
