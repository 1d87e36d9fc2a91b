"""HTTP (and RTSP) authentication: the challenges of a 401 and the ``Authorization`` they
ask for (Basic; Digest with MD5 or SHA-256, their ``-sess`` forms, ``qop=auth`` or none;
RFC 7616, RFC 2617). Pure: standard library only, no I/O; the probes (RTSP) and the
devices (Shelly plugs) share it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re

_AUTH_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_CHALLENGE_START = re.compile(r"(?:^|,)\s*(Basic|Digest)(?=\s|$)", re.IGNORECASE)
_DIGEST_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def parse_challenges(values: list[str]) -> list[tuple[str, dict[str, str]]]:
    """``WWW-Authenticate`` values -> [(scheme lower-case, params)], several per value."""
    out: list[tuple[str, dict[str, str]]] = []
    for value in values:
        starts = list(_CHALLENGE_START.finditer(value))
        for i, m in enumerate(starts):
            end = starts[i + 1].start() if i + 1 < len(starts) else len(value)
            params: dict[str, str] = {}
            for key, raw in _AUTH_PARAM.findall(value[m.end() : end]):
                if raw.startswith('"'):
                    raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
                params[key.lower()] = raw
            out.append((m.group(1).lower(), params))
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def digest_response(
    params: dict[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
) -> str | None:
    """The ``Authorization: Digest ...`` value for one request (RFC 7616/2617), or None
    when the challenge asks for something we do not do (another algorithm, auth-int only)."""
    algorithm = params.get("algorithm", "MD5")
    base = algorithm.upper().removesuffix("-SESS")
    hasher = _DIGEST_HASHES.get(base)
    if hasher is None:
        return None

    def h(text: str) -> str:
        return hasher(text.encode("utf-8")).hexdigest()

    realm, nonce = params.get("realm", ""), params.get("nonce", "")
    qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
    if qops and "auth" not in qops:
        return None
    ha1 = h(f"{username}:{realm}:{password}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    nc_text = f"{nc:08x}"
    if qops:
        response = h(f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
    else:
        response = h(f"{ha1}:{nonce}:{ha2}")
    fields = [
        f"username={_quote(username)}",
        f"realm={_quote(realm)}",
        f"nonce={_quote(nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(response)}",
    ]
    if "algorithm" in params:
        fields.append(f"algorithm={algorithm}")
    if "opaque" in params:
        fields.append(f"opaque={_quote(params['opaque'])}")
    if qops:
        fields += ["qop=auth", f"nc={nc_text}", f"cnonce={_quote(cnonce)}"]
    return "Digest " + ", ".join(fields)


class Auth:
    """The challenge chosen from a 401 and the header it gives each request."""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self.scheme = ""
        self._params: dict[str, str] = {}
        self._nc = 0
        self._cnonce = ""

    def __repr__(self) -> str:  # never the credentials
        return f"Auth(scheme={self.scheme!r})"

    @property
    def has_credentials(self) -> bool:
        return bool(self._username or self._password)

    def choose(self, challenges: list[tuple[str, dict[str, str]]]) -> bool:
        """Take the strongest challenge we can answer; False when there is none."""
        best: tuple[int, str, dict[str, str]] | None = None
        for scheme, params in challenges:
            if scheme == "digest":
                alg = params.get("algorithm", "MD5").upper().removesuffix("-SESS")
                rank = {"SHA-256": 3, "MD5": 2}.get(alg, 0)
            else:
                rank = 1 if scheme == "basic" else 0
            if rank and (best is None or rank > best[0]):
                best = (rank, scheme, params)
        if best is None:
            return False
        self.scheme, self._params = best[1], best[2]
        self._nc = 0
        self._cnonce = os.urandom(12).hex()
        return True

    def header(self, method: str, uri: str) -> str | None:
        if self.scheme == "basic":
            token = f"{self._username}:{self._password}".encode()
            return "Basic " + base64.b64encode(token).decode("ascii")
        if self.scheme == "digest":
            self._nc += 1
            return digest_response(
                self._params,
                username=self._username,
                password=self._password,
                method=method,
                uri=uri,
                nc=self._nc,
                cnonce=self._cnonce,
            )
        return None
