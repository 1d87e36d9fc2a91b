"""Client of a Shelly Gen2+ smart plug's RPC over HTTP: what it is, whether its switch is
on, and switching it (with the plug's own ``toggle_after`` timer).

One call is one ``GET /rpc/<Method>?<params>`` (HTTP/1.1, ``Connection: close``) on asyncio
streams, straight to the plug: no proxy, no redirect followed (a 3xx is an error). A plug
with a password answers 401 with a Digest SHA-256 challenge (user ``admin``, realm = its
device id); the request is sent once more with the answer (``model.digest``), and only to
such a challenge: never Basic, never the password itself on the wire.

Every call is bounded: the whole of it (connect, both requests of a Digest exchange, the
reading) by ``timeout`` seconds, and what is read by ``MAX_REPLY`` bytes; the JSON is
checked for shape before anything of it is used. Whatever goes wrong (no answer, a
trickle, garbage, an RPC error) raises ``PlugError``, one printable sentence naming the
plug, never its password: ``plug at http://10.0.0.5: connection refused``.

The API as the Shelly Gen2 documentation describes it (shelly-api-docs.shelly.cloud,
gen2: ComponentsAndServices/Switch, ComponentsAndServices/Shelly, General/Authentication).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from pumaguard_hb import __version__
from pumaguard_hb.model.digest import Auth, parse_challenges
from pumaguard_hb.model.errors import HeartbeatError, InvalidValue
from pumaguard_hb.model.text import printable

SWITCH_USER = "admin"  # Gen2 Digest user
MAX_REPLY = 64 * 1024  # bytes of an answer read at most (headers and body)
DEFAULT_TIMEOUT = 5.0
MAX_SWITCH_ID = 15
PLUG_KEY = "heartbeat_plug"
USER_AGENT = f"pumaguard-heartbeat/{__version__}"
MAX_MESSAGE = 120  # characters of a plug's error message shown

_ALLOWED = "http://HOST or http://HOST:PORT of a Shelly Gen2+ plug, optionally ?id=N (0-15)"
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_NETLOC = re.compile(r"(\[[^\]]*\]|[^:\[\]]+)(?::(\d{0,5}))?")
_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})(?:[ \t].*)?")
_USERINFO = re.compile(r"^([^:/?#]*:?//)[^/?#]*@")


class PlugError(HeartbeatError):
    """The plug could not be reached, refused, or sent an answer that cannot be used."""

    def __init__(self, url: str, problem: str) -> None:
        self.url = url
        self.problem = problem
        super().__init__(f"plug at {url}: {problem}")


class _Fail(Exception):
    """A call that ends here: the problem, as PlugError will say it."""


# ---------------------------------------------------------------- which plug


def _refuse(value: object, why: str = "") -> InvalidValue:
    shown = _USERINFO.sub(r"\1***@", value) if isinstance(value, str) else value
    return InvalidValue(PLUG_KEY, shown, f"{_ALLOWED} ({why})" if why else _ALLOWED)


def _host_port(url: object) -> tuple[str, int | None, str]:
    """(host for connecting, port or None, the canonical ``http://HOST[:PORT]``) of a plug
    URL with nothing after the host but an optional ``/``; InvalidValue otherwise."""
    if not isinstance(url, str):
        raise _refuse(url)
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in url):
        raise _refuse(url, "control characters")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() != "http":
        raise _refuse(url, "only http://")
    netloc = rest.removesuffix("/")
    if "@" in netloc:
        raise _refuse(url, "no user name or password: the password is a setting of its own")
    if any(c in netloc for c in "/?#"):
        raise _refuse(url, "no path, query or fragment")
    m = _NETLOC.fullmatch(netloc)
    if m is None:
        raise _refuse(url, "no host")
    host, port_text = m.group(1), m.group(2)
    port: int | None = None
    if port_text is not None:
        if not port_text or int(port_text) not in range(1, 65536):
            raise _refuse(url, "the port must be 1-65535")
        port = int(port_text)
    if host.startswith("["):
        if "%" in host:
            raise _refuse(url, "no IPv6 zone")
        try:
            host = ipaddress.IPv6Address(host[1:-1]).compressed
        except ValueError:
            raise _refuse(url, "not an IPv6 address in [ ]") from None
        shown = f"[{host}]"
    elif re.fullmatch(r"[0-9.]+", host):
        try:
            host = shown = str(ipaddress.IPv4Address(host))
        except ValueError:
            raise _refuse(url, "not an IPv4 address") from None
    else:
        labels = host.split(".")
        if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise _refuse(url, "not an IP address or a host name")
        host = shown = host.lower()
    return host, port, "http://" + shown + ("" if port is None else f":{port}")


@dataclass(frozen=True)
class Plug:
    """A Shelly Gen2+ plug: ``url`` is ``http://HOST[:PORT]`` (no path, query or user
    info), ``switch_id`` which of its switches; the password is never shown."""

    url: str
    switch_id: int = 0
    password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", _host_port(self.url)[2])
        sid = self.switch_id
        if isinstance(sid, bool) or not isinstance(sid, int) or not 0 <= sid <= MAX_SWITCH_ID:
            raise _refuse(f"{self.url}?id={sid}", f"the switch id must be 0-{MAX_SWITCH_ID}")
        if not isinstance(self.password, str):
            raise InvalidValue("heartbeat_plug_password", "***", "text")


def parse_plug(value: str, password: str = "") -> Plug:
    """``http://HOST[:PORT][/][?id=N]`` -> Plug; HOST an IPv4 or IPv6 (``[...]``) address or
    a DNS name, N 0-15 (default 0). InvalidValue (key ``heartbeat_plug``) otherwise; a user
    name or password in the URL is refused and not repeated in the message."""
    if not isinstance(value, str):
        raise _refuse(value)
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
        raise _refuse(value, "control characters")
    text = value.strip(" ")
    if "#" in text:
        raise _refuse(value, "no fragment")
    base, sep, query = text.partition("?")
    switch_id = 0
    if sep:
        m = re.fullmatch(r"id=(\d{1,2})", query)
        if m is None or int(m.group(1)) > MAX_SWITCH_ID:
            raise _refuse(value, f"the only query is ?id=N, N 0-{MAX_SWITCH_ID}")
        switch_id = int(m.group(1))
    return Plug(base, switch_id, password)


@dataclass(frozen=True)
class SwitchStatus:
    """A switch's output, and the seconds left on a ``toggle_after`` timer it runs."""

    on: bool
    timer_remaining: float | None = None


# ---------------------------------------------------------------- the calls


async def device_info(plug: Plug, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``Shelly.GetDeviceInfo``: at least ``id`` (str), ``gen`` (int, 2 or more), ``model``."""
    method = "Shelly.GetDeviceInfo"
    info = await _call(plug, method, [], timeout)
    if not isinstance(info, dict):
        raise _unexpected(plug, method, "not an object")
    for key, kind in (("id", str), ("model", str)):
        if not isinstance(info.get(key), kind) or not info[key]:
            raise _unexpected(plug, method, f"no {key}")
    gen = info.get("gen")
    if isinstance(gen, bool) or not isinstance(gen, int):
        raise _unexpected(plug, method, "no gen")
    if gen < 2:
        raise PlugError(plug.url, f"is a generation {gen} device; only Gen2+ RPC is spoken")
    return info


async def switch_status(plug: Plug, timeout: float = DEFAULT_TIMEOUT) -> SwitchStatus:
    """``Switch.GetStatus?id=N``: the output, and the time left on its timer if one runs
    (``timer_started_at + timer_duration - now`` by our clock, within 0..duration)."""
    method = "Switch.GetStatus"
    status = await _call(plug, method, [("id", str(plug.switch_id))], timeout)
    if not isinstance(status, dict):
        raise _unexpected(plug, method, "not an object")
    output = status.get("output")
    if not isinstance(output, bool):
        raise _unexpected(plug, method, "output is not true or false")
    sid = status.get("id", plug.switch_id)
    if sid != plug.switch_id or isinstance(sid, bool):
        raise _unexpected(plug, method, f"not about switch {plug.switch_id}")
    started, duration = status.get("timer_started_at"), status.get("timer_duration")
    remaining = None
    if _number(started) and _number(duration) and duration >= 0:
        remaining = min(max(started + duration - time.time(), 0.0), float(duration))
    return SwitchStatus(output, remaining)


async def switch_set(
    plug: Plug, on: bool, toggle_after: float | None = None, timeout: float = DEFAULT_TIMEOUT
) -> bool:
    """``Switch.Set?id=N&on=true|false[&toggle_after=S]``: the plug switches, and with
    ``toggle_after`` switches back by itself after S seconds. Returns ``was_on``."""
    method = "Switch.Set"
    if not isinstance(on, bool):
        raise InvalidValue("on", on, "true or false")
    params = [("id", str(plug.switch_id)), ("on", "true" if on else "false")]
    if toggle_after is not None:
        if not _number(toggle_after) or toggle_after <= 0:
            raise InvalidValue("toggle_after", toggle_after, "seconds, a number > 0")
        params.append(("toggle_after", f"{toggle_after:.3f}".rstrip("0").rstrip(".")))
    result = await _call(plug, method, params, timeout)
    was_on = result.get("was_on") if isinstance(result, dict) else None
    if not isinstance(was_on, bool):
        raise _unexpected(plug, method, "no was_on")
    return was_on


def _number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _unexpected(plug: Plug, method: str, what: str) -> PlugError:
    return PlugError(plug.url, f"sent an unexpected answer to {method} ({what})")


# ---------------------------------------------------------------- HTTP


@dataclass
class _Reply:
    status: int
    headers: dict[str, list[str]]
    body: bytes


async def _call(plug: Plug, method: str, params: list[tuple[str, str]], timeout: float) -> Any:
    """One RPC; its decoded JSON result. PlugError for everything else."""
    if isinstance(timeout, bool) or not _number(timeout) or timeout <= 0:
        raise InvalidValue("timeout", timeout, "seconds, a number > 0")
    host, port, _ = _host_port(plug.url)
    target = f"/rpc/{method}" + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
    stage = ["connect"]
    try:
        async with asyncio.timeout(timeout):
            reply = await _exchange(host, port or 80, plug.url, target, None, stage)
            if reply.status == 401:
                reply = await _authenticate(plug, reply, host, port or 80, target, method, stage)
    except _Fail as err:
        raise PlugError(plug.url, str(err)) from None
    except TimeoutError:
        if stage[0] == "connect":
            raise PlugError(plug.url, f"connect timed out after {timeout:g}s") from None
        raise PlugError(plug.url, f"no complete answer to {method} in {timeout:g}s") from None
    except ConnectionRefusedError:
        raise PlugError(plug.url, "connection refused") from None
    except socket.gaierror:
        raise PlugError(plug.url, f"cannot resolve {host}") from None
    except (ConnectionResetError, BrokenPipeError):
        raise PlugError(plug.url, f"reset the connection ({method})") from None
    except OSError as err:
        text = printable(err.strerror or str(err) or type(err).__name__)[:MAX_MESSAGE]
        raise PlugError(plug.url, text[:1].lower() + text[1:]) from None
    return _result(plug, reply, method)


async def _authenticate(
    plug: Plug, reply: _Reply, host: str, port: int, target: str, method: str, stage: list[str]
) -> _Reply:
    """The request once more, answering the 401's Digest SHA-256 challenge."""
    if not plug.password:
        raise _Fail(f"needs a password (it answered 401 to {method})")
    offers = [
        (scheme, params)
        for scheme, params in parse_challenges(reply.headers.get("www-authenticate", []))
        if scheme == "digest" and params.get("algorithm", "").upper() == "SHA-256"
    ]
    auth = Auth(SWITCH_USER, plug.password)
    header = auth.header("GET", target) if auth.choose(offers) else None
    if header is None:
        raise _Fail(f"asks for a login other than Digest SHA-256 (401 to {method})")
    if not header.isascii() or not header.isprintable():
        raise _Fail(f"sent a login challenge that cannot be answered (401 to {method})")
    stage[0] = "connect"
    again = await _exchange(host, port, plug.url, target, header, stage)
    if again.status == 401:
        raise _Fail(f"password refused (401 to {method})")
    return again


def _result(plug: Plug, reply: _Reply, method: str) -> Any:
    if 300 <= reply.status < 400:
        raise PlugError(plug.url, f"answered HTTP {reply.status} to {method} (not followed)")
    try:
        body = json.loads(reply.body.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        if reply.status != 200:
            hint = " (not a Shelly Gen2+ plug?)" if reply.status == 404 else ""
            raise PlugError(plug.url, f"answered HTTP {reply.status} to {method}{hint}") from None
        raise PlugError(
            plug.url, f"sent something that is not JSON in answer to {method}"
        ) from None
    if reply.status != 200:
        error = body.get("error", body) if isinstance(body, dict) else None
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            code = error.get("code") if isinstance(error, dict) else None
            shown = printable(message)
            shown = shown if len(shown) <= MAX_MESSAGE else shown[: MAX_MESSAGE - 3] + "..."
            number = f" (code {code})" if _number(code) and abs(code) < 1e9 else ""
            raise PlugError(plug.url, f"refused {method}: {shown}{number}")
        raise PlugError(plug.url, f"answered HTTP {reply.status} to {method}")
    return body


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def _exchange(
    host: str, port: int, url: str, target: str, authorization: str | None, stage: list[str]
) -> _Reply:
    """One request on a connection of its own, and its whole reply (capped)."""
    stage[0] = "connect"
    reader, writer = await asyncio.open_connection(host, port)
    try:
        stage[0] = "reply"
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {url.removeprefix('http://')}",
            f"User-Agent: {USER_AGENT}",
            "Accept: application/json",
            "Connection: close",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("ascii"))
        await writer.drain()
        return await _read_reply(reader)
    finally:
        writer.transport.abort()


async def _read_reply(reader: asyncio.StreamReader) -> _Reply:
    buf = bytearray()
    too_much = f"sent more than {MAX_REPLY // 1024} KiB"

    async def more() -> bool:
        room = MAX_REPLY + 1 - len(buf)
        if room <= 0:
            raise _Fail(too_much)
        chunk = await reader.read(room)
        buf.extend(chunk)
        if len(buf) > MAX_REPLY:
            raise _Fail(too_much)
        return bool(chunk)

    while (end := buf.find(b"\r\n\r\n")) < 0:
        if not await more():
            raise _Fail(
                "closed the connection " + ("in its answer" if buf else "without answering")
            )
    head, start = bytes(buf[:end]).split(b"\r\n"), end + 4
    m = _STATUS_LINE.fullmatch(head[0])
    if m is None:
        raise _Fail("sent something that is not HTTP")
    headers: dict[str, list[str]] = {}
    for raw in head[1:]:
        name, sep, value = raw.decode("latin-1").partition(":")
        if sep and name.strip():
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    chunked = "chunked" in ",".join(headers.get("transfer-encoding", [])).lower()
    length_text = (headers.get("content-length") or [""])[0]
    if chunked:
        body = await _dechunk(buf, start, more)
    elif length_text:
        if not length_text.isdigit() or len(length_text) > 9:
            raise _Fail("sent a bad Content-Length")
        if start + int(length_text) > MAX_REPLY:
            raise _Fail(too_much)
        while len(buf) < start + int(length_text):
            if not await more():
                raise _Fail("closed the connection in its answer")
        body = bytes(buf[start : start + int(length_text)])
    else:
        while await more():
            pass
        body = bytes(buf[start:])
    return _Reply(int(m.group(1)), headers, body)


async def _dechunk(buf: bytearray, pos: int, more: Callable[[], Awaitable[bool]]) -> bytes:
    """A chunked body from ``buf[pos:]``, reading on with ``more`` until its last chunk."""
    out = bytearray()
    while True:
        while (eol := buf.find(b"\r\n", pos)) < 0:
            if not await more():
                raise _Fail("closed the connection in its answer")
        size_text = bytes(buf[pos:eol]).split(b";")[0].strip()
        if not re.fullmatch(rb"[0-9A-Fa-f]{1,6}", size_text):
            raise _Fail("sent a bad chunk")
        size = int(size_text, 16)
        if size == 0:
            return bytes(out)
        while len(buf) < eol + 2 + size + 2:
            if not await more():
                raise _Fail("closed the connection in its answer")
        out += buf[eol + 2 : eol + 2 + size]
        pos = eol + 2 + size + 2
