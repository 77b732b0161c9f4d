"""Login throttling: repeated wrong passwords lock the login (and the caller's address) for a while.

After :data:`FREE_FAILURES` wrong passwords within :data:`WINDOW_SECONDS`
for one login, or :data:`FREE_FAILURES_PER_ADDRESS` from one client address
(whatever login it tries), further attempts are refused without checking the
password until a lock expires; each further failure doubles the lock, from
:data:`FIRST_LOCK_SECONDS` up to :data:`MAX_LOCK_SECONDS`. A correct password
clears the login's count (not the address's). State is in memory: a restart
forgets it, which only an administrator can do.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "FIRST_LOCK_SECONDS",
    "FREE_FAILURES",
    "FREE_FAILURES_PER_ADDRESS",
    "MAX_LOCK_SECONDS",
    "WINDOW_SECONDS",
    "LoginThrottle",
]

FREE_FAILURES = 5
FREE_FAILURES_PER_ADDRESS = 20
WINDOW_SECONDS = 15 * 60.0
FIRST_LOCK_SECONDS = 30.0
MAX_LOCK_SECONDS = 15 * 60.0
_MAX_KEYS = 10000


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)
    locked_until: float = 0.0


class LoginThrottle:
    """Counts wrong passwords per login and per client address.

    Parameters
    ----------
    clock : callable returning float, optional
        Seconds (default :func:`time.monotonic`); tests pass a fake clock.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._records: dict[tuple[str, str], _Record] = {}

    def _keys(self, login: str, address: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("login", login.lower()), ("address", address)

    def retry_after(self, login: str, address: str) -> float:
        """Seconds until the login (or the address) may try again; 0 when it may now."""
        now = self._clock()
        with self._lock:
            waits = [r.locked_until - now for k in self._keys(login, address) if (r := self._records.get(k))]
        return max([0.0, *waits])

    def failed(self, login: str, address: str) -> float:
        """Record a wrong password; the lock it starts (seconds, 0 for none)."""
        now = self._clock()
        longest = 0.0
        with self._lock:
            if len(self._records) > _MAX_KEYS:
                self._records = {k: r for k, r in self._records.items() if r.locked_until > now}
            for key, free in zip(self._keys(login, address), (FREE_FAILURES, FREE_FAILURES_PER_ADDRESS), strict=True):
                record = self._records.setdefault(key, _Record())
                record.failures = [t for t in record.failures if now - t < WINDOW_SECONDS] + [now]
                over = len(record.failures) - free
                if over > 0:
                    lock = min(MAX_LOCK_SECONDS, FIRST_LOCK_SECONDS * 2 ** (over - 1))
                    record.locked_until = max(record.locked_until, now + lock)
                    longest = max(longest, record.locked_until - now)
        return longest

    def succeeded(self, login: str) -> None:
        """A correct password: the login's failures are forgotten."""
        with self._lock:
            self._records.pop(("login", login.lower()), None)
