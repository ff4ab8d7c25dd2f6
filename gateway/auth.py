"""Front door: who may call what. API keys with two scopes, and the decision for one call.

A key is `infer` (inference, metadata, health) or `admin` (everything, including what
changes or reveals the system). The scope a route requires comes from scopes.py; health
and metrics may be configured open or to another scope. No keys at all means auth is
off (the front ends then install no guard).

Keys are compared as SHA-256 digests with `hmac.compare_digest`, always against every
configured key, so neither a key's length nor which key matched shows in the time taken.
Nothing here reads the environment: config.py hands the strings in. The enforcers (ASGI
middleware, grpc.aio interceptor) live in guards.py; this module only decides.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.scopes import ADMIN, HEALTH, INFER, METRICS, Scope, grpc_route_kind, http_route_kind

log = logging.getLogger("servegate.auth")


class AuthConfigError(ValueError):
    """A key file, key list or scope name the gateway refuses to start with; never quotes a key."""


_KEY_SCOPES: Mapping[str, Scope] = {"infer": Scope.INFER, "admin": Scope.ADMIN}


def scope_named(name: str) -> Scope:
    """'open', 'infer' or 'admin' (the settings' spelling for health and metrics) as a Scope."""
    try:
        return Scope[name.upper()]
    except KeyError:
        raise AuthConfigError(f"unknown scope {name!r}; one of open, infer, admin") from None


# ---- keys ----------------------------------------------------------------------------------

Keys = dict[str, tuple[Scope, str]]
"""key -> (its scope, where it was configured: for error messages that never quote the key)."""


def _checked(key: str, where: str) -> str:
    if not key:
        raise AuthConfigError(f"{where}: the key is empty")
    if any(c.isspace() for c in key):
        raise AuthConfigError(f"{where}: the key contains whitespace (a Bearer token cannot)")
    if not all("!" <= c <= "~" for c in key):
        raise AuthConfigError(f"{where}: the key has characters outside printable ASCII")
    return key


def _add(keys: Keys, key: str, scope: Scope, where: str) -> None:
    seen = keys.get(key)
    if seen is not None and seen[0] != scope:
        raise AuthConfigError(
            f"{where}: the same key is also configured as {seen[0].name.lower()} ({seen[1]}); "
            "a key has exactly one scope"
        )
    keys.setdefault(key, (scope, where))


def keys_from_file(path: Path) -> Keys:
    """One `scope:key` a line (`#` comments, blank lines skipped); the first bad line fails."""
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthConfigError(f"API key file {path}: cannot read it ({exc})") from None
    if mode & 0o004:
        log.warning("API key file %s is readable by every user; chmod 600 it", path)
    keys: Keys = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"API key file {path} line {number}"
        name, colon, key = line.partition(":")
        scope = _KEY_SCOPES.get(name.strip().lower())
        if not colon or scope is None:
            raise AuthConfigError(f"{where}: expected 'infer:<key>' or 'admin:<key>'")
        _add(keys, _checked(key.strip(), where), scope, where)
    return keys


def keys_from_strings(infer: str = "", admin: str = "") -> Keys:
    """Comma-separated key lists, as SERVEGATE_INFER_KEYS / SERVEGATE_ADMIN_KEYS hold them."""
    keys: Keys = {}
    for scope, listed in ((Scope.INFER, infer), (Scope.ADMIN, admin)):
        for number, item in enumerate(listed.split(","), start=1):
            if item.strip():
                where = f"{scope.name.lower()} key list item {number}"
                _add(keys, _checked(item.strip(), where), scope, where)
    return keys


def load_keys(file: Path | None = None, *, infer: str = "", admin: str = "") -> KeyRing:
    """Every configured key, from the file and the lists together; an empty ring: auth off."""
    keys = keys_from_file(file) if file is not None else {}
    for key, (scope, where) in keys_from_strings(infer, admin).items():
        _add(keys, key, scope, where)
    return KeyRing({key: scope for key, (scope, _) in keys.items()})


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class KeyRing:
    """The configured keys, held only as digests; says which scope a presented key grants."""

    def __init__(self, keys: Mapping[str, Scope]) -> None:
        self._entries = tuple((_digest(k.encode()), int(s)) for k, s in keys.items())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"KeyRing({len(self._entries)} keys)"

    def scope_of(self, presented: bytes) -> Scope | None:
        """The scope `presented` grants, or None. Every key is compared, with no early exit."""
        digest = _digest(presented)
        granted = 0
        for known, scope in self._entries:
            granted |= scope * hmac.compare_digest(digest, known)
        return Scope(granted) if granted else None


def bearer(value: str | bytes | None) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` value (the scheme in any case)."""
    if not value:
        return None
    raw = value.encode("latin-1", "replace") if isinstance(value, str) else value
    scheme, _, token = raw.strip().partition(b" ")
    token = token.strip()
    return token if token and scheme.lower() == b"bearer" else None


# ---- the decision --------------------------------------------------------------------------


class Verdict(enum.Enum):
    ALLOW = "allow"
    MISSING = "missing"  # 401: no key
    UNKNOWN = "unknown"  # 401: a key nobody configured
    FORBIDDEN = "forbidden"  # 403: a known key without the scope


@dataclass(frozen=True)
class AccessPolicy:
    """Keys plus the configurable scopes: decides one call from its route and credentials."""

    keys: KeyRing
    health: Scope = Scope.INFER
    """OPEN lets probes that cannot send headers in (/v2/health/*, grpc.health.v1, ...)."""
    metrics: Scope = Scope.INFER
    _kinds: Mapping[str, Scope] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        kinds = {INFER: Scope.INFER, ADMIN: Scope.ADMIN, HEALTH: self.health}
        object.__setattr__(self, "_kinds", {**kinds, METRICS: self.metrics})

    @property
    def enabled(self) -> bool:
        """False without keys: the front ends install no guard at all."""
        return len(self.keys) > 0

    def http_scope(self, path: str) -> Scope:
        return self._kinds[http_route_kind(path)]

    def grpc_scope(self, method: str) -> Scope:
        return self._kinds[grpc_route_kind(method)]

    def decide(self, required: Scope, token: bytes | None) -> Verdict:
        """ALLOW, or why not. `token` is what `bearer()` read from the call."""
        if required is Scope.OPEN:
            return Verdict.ALLOW
        if token is None:
            return Verdict.MISSING
        granted = self.keys.scope_of(token)
        if granted is None:
            return Verdict.UNKNOWN
        return Verdict.ALLOW if granted >= required else Verdict.FORBIDDEN


def access_policy(
    file: Path | None = None,
    *,
    infer_keys: str = "",
    admin_keys: str = "",
    health: str = "infer",
    metrics: str = "infer",
) -> AccessPolicy:
    """The policy from settings' values; raises AuthConfigError on anything malformed."""
    return AccessPolicy(
        load_keys(file, infer=infer_keys, admin=admin_keys),
        health=scope_named(health),
        metrics=scope_named(metrics),
    )
