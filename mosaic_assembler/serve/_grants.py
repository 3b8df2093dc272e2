"""Grants (TileMaker's): a layer may need a grant; a bearer token carries grants.

The file is `{"layers": {"LAYER": "GRANT", …}, "tokens": {"TOKEN": ["GRANT", …], …}}`.
Tokens are compared in constant time against every known token, and never logged.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mosaic_assembler.errors import AccessDeniedError, ConfigError


@dataclass(frozen=True)
class Grants:
    """Which layer needs which grant, and which grants each token holds."""

    layers: Mapping[str, str] = field(default_factory=dict)
    tokens: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def token_grants(self, authorization: str | None) -> frozenset[str] | None:
        """The grants of the request's bearer token; None without a token.

        Raises:
            AccessDeniedError: 401, a token that is not one of the file's.
        """
        token = bearer_token(authorization)
        if token is None:
            return None
        found: frozenset[str] | None = None
        given = token.encode()
        for known, grants in self.tokens.items():  # no early exit: constant time over all
            if hmac.compare_digest(known.encode(), given):
                found = grants
        if found is None:
            raise AccessDeniedError("unknown token", 401)
        return found

    def check(self, layer: str, authorization: str | None) -> None:
        """Let the request read `layer`, or raise.

        Raises:
            AccessDeniedError: 401 without a token (or an unknown one), 403 without the grant.
        """
        held = self.token_grants(authorization)
        needed = self.layers.get(layer)
        if needed is None:
            return
        if held is None:
            raise AccessDeniedError(f"layer {layer!r} needs a token (Authorization: Bearer)", 401)
        if needed not in held:
            raise AccessDeniedError(f"this token has no grant for layer {layer!r}", 403)

    def visible(self, names: Iterable[str], authorization: str | None) -> list[str]:
        """The layers the request may see (the others are left out of the list)."""
        held = self.token_grants(authorization) or frozenset()
        return [n for n in names if self.layers.get(n) is None or self.layers[n] in held]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AccessDeniedError("Authorization must be 'Bearer TOKEN'", 401)
    return token.strip()


def load_grants(path: str | Path, layer_names: Iterable[str]) -> Grants:
    """Read and check a grants file against the served layers.

    Raises:
        ConfigError: unreadable JSON, a wrong shape, or a grant for a layer not served.
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"grants file {path}: {e}") from e
    return grants_from_dict(doc, layer_names, str(path))


def grants_from_dict(doc: object, layer_names: Iterable[str], where: str = "grants") -> Grants:
    """Check the grants document's shape (see the module docstring).

    Raises:
        ConfigError: a wrong shape, or a grant for a layer not served.
    """
    if not isinstance(doc, dict) or set(doc) - {"layers", "tokens"}:
        raise ConfigError(f"{where}: expected an object with 'layers' and 'tokens'")
    layers, tokens = doc.get("layers", {}), doc.get("tokens", {})
    if not isinstance(layers, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in layers.items()
    ):
        raise ConfigError(f"{where}: 'layers' maps a layer name to a grant name")
    if not isinstance(tokens, dict) or not all(
        isinstance(k, str) and k and isinstance(v, list) and all(isinstance(g, str) for g in v)
        for k, v in tokens.items()
    ):
        raise ConfigError(f"{where}: 'tokens' maps a token to a list of grant names")
    unknown = sorted(set(layers) - set(layer_names))
    if unknown:
        raise ConfigError(f"{where}: unknown layer {', '.join(map(repr, unknown))}")
    return Grants(dict(layers), {k: frozenset(v) for k, v in tokens.items()})
