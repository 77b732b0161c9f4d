"""Optional login: a configured list of users with hashed passwords.

The users file (YAML)::

    users:
      alice:
        password: "scrypt:32768:8:1$..."   # mskus review --hash-password
        name: "Doe^Alice"                  # Verifying Observer Name (default: the login)
        organisation: "Radiology QA"       # default organisation on the form

Hashes are Werkzeug's (scrypt by default); plain passwords are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from werkzeug.security import check_password_hash, generate_password_hash

from pipeline.errors import UsageError
from pipeline.yamlfile import read_yaml_mapping

__all__ = ["User", "hash_password", "load_users", "verify_login"]

_HASH_METHODS = ("scrypt:", "pbkdf2:")
#: Checked against when the login is unknown, so timing does not tell which logins exist.
_DUMMY_HASH = generate_password_hash("mskus-no-such-user")


@dataclass(frozen=True)
class User:
    """A reviewer who may log in."""

    login: str
    password_hash: str
    name: str
    organisation: str = ""


def hash_password(password: str) -> str:
    """A salted hash for the users file (Werkzeug, scrypt)."""
    if not password:
        raise UsageError("an empty password cannot be hashed")
    return generate_password_hash(password, method="scrypt")


def load_users(path: str | Path) -> Mapping[str, User]:
    """Read and check a users file.

    Raises
    ------
    UsageError
        Unreadable file, bad YAML, no users, a user without a hashed password.
    """
    path = Path(path)
    data = read_yaml_mapping(path, what="users file")
    users = data.get("users") if isinstance(data, Mapping) else None
    if not isinstance(users, Mapping) or not users:
        raise UsageError(f"{path}: expected 'users:' with at least one user")
    out: dict[str, User] = {}
    for login, entry in users.items():
        if not isinstance(entry, Mapping):
            raise UsageError(f"{path}: user {login!r} needs a mapping with 'password'")
        password = str(entry.get("password") or "")
        if not password.startswith(_HASH_METHODS):
            raise UsageError(f"{path}: user {login!r}: 'password' must be a hash from 'mskus review --hash-password'")
        out[str(login)] = User(
            login=str(login),
            password_hash=password,
            name=str(entry.get("name") or login),
            organisation=str(entry.get("organisation") or ""),
        )
    return MappingProxyType(out)


def verify_login(users: Mapping[str, User], login: str, password: str) -> User | None:
    """The user when ``password`` is theirs, else ``None`` (same work either way)."""
    user = users.get(login)
    ok = check_password_hash(user.password_hash if user is not None else _DUMMY_HASH, password)
    return user if ok and user is not None else None
