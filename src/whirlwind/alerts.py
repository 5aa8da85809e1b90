"""Alerts as a gate: Alertmanager's firing alerts hold voluntary work (`block-on-alerts`).

The option is an Alertmanager URL and one or more label matchers, separated by spaces:
`http://10.0.0.5:9093 severity=critical`, `https://am.example:9093/am severity=~"critical|page"
team!=db`. Matchers use Alertmanager's operators (`=`, `!=`, `=~`, `!~`); a value may be
double-quoted; an alert must match every matcher. Empty: no gate.

Before voluntary work the engine asks Alertmanager's API v2 for the active alerts that
match (`GET /api/v2/alerts?active=true&silenced=false&inhibited=false&filter=...`), at most
once per `CACHE_SECONDS`, with a deadline. Any match holds the work; an Alertmanager that
cannot be asked holds it too (fail closed), with its own message. Healing is never held.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import http.client
import json
import logging
import re
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)

# How long an answer of Alertmanager holds (seconds): the engine plans far more often.
CACHE_SECONDS = 30.0
# Deadline of one request (connect and read), seconds.
TIMEOUT = 5.0
# Most bytes of an answer read (a very busy Alertmanager: thousands of alerts).
MAX_ANSWER = 8 * 1024 * 1024
# Alert names shown in a gate's detail; the rest are counted.
MAX_NAMES = 3
MAX_OPTION = 2048

_LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# name, operator, value (longest operators first).
_MATCHER = re.compile(r"^([^=!~]+)(=~|!~|!=|=)(.*)$")
EXAMPLE = "http://10.0.0.5:9093 severity=critical"


class AlertsConfigError(ValueError):
    """The `block-on-alerts` value does not parse; the message names the problem."""


@dataclasses.dataclass(frozen=True)
class Matcher:
    """One label matcher: `name op value` with op one of =, !=, =~, !~."""

    name: str
    op: str
    value: str

    def to_filter(self) -> str:
        """The matcher as Alertmanager's `filter` parameter takes it (value quoted)."""
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


@dataclasses.dataclass(frozen=True)
class AlertsConfig:
    """Where Alertmanager is and which alerts hold work."""

    url: str
    matchers: tuple[Matcher, ...]

    def get_query_url(self) -> str:
        """The API v2 request for the active, unsilenced, uninhibited matching alerts."""
        query = [("active", "true"), ("silenced", "false"), ("inhibited", "false")]
        query += [("filter", m.to_filter()) for m in self.matchers]
        return f"{self.url}/api/v2/alerts?{urllib.parse.urlencode(query)}"


def parse_config(text: str) -> AlertsConfig | None:
    """`block-on-alerts` as AlertsConfig (None when empty), or AlertsConfigError."""
    if not isinstance(text, str):
        raise AlertsConfigError(f"expected text such as {EXAMPLE!r}")
    if len(text) > MAX_OPTION:
        raise AlertsConfigError(f"longer than {MAX_OPTION} characters")
    words = text.split()
    if not words:
        return None
    url = _parse_url(words[0])
    if len(words) == 1:
        raise AlertsConfigError(
            f"no label matcher after the URL (e.g. {EXAMPLE!r}): "
            "every firing alert would hold the work"
        )
    return AlertsConfig(url, tuple(_parse_matcher(word) for word in words[1:]))


def _parse_url(word: str) -> str:
    try:
        parts = urllib.parse.urlsplit(word)
        port = parts.port
    except ValueError:
        raise AlertsConfigError(f"{word!r} is not a URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise AlertsConfigError(
            f"the first word must be Alertmanager's http:// or https:// URL, got {word!r}"
        )
    if parts.username is not None or parts.password is not None:
        # They would end up in logs and status; Alertmanager has no login of its own.
        raise AlertsConfigError("the URL must not carry a user name or password")
    if parts.query or parts.fragment:
        raise AlertsConfigError("the URL must not have a query or fragment")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    where = f"{host}:{port}" if port is not None else host
    return f"{parts.scheme}://{where}{parts.path.rstrip('/')}"


def _parse_matcher(word: str) -> Matcher:
    match = _MATCHER.match(word)
    if match is None:
        raise AlertsConfigError(
            f"{word!r} is not a label matcher such as severity=critical (operators =, !=, =~, !~)"
        )
    name, op, value = match.groups()
    if not _LABEL_NAME.match(name):
        raise AlertsConfigError(f"{name!r} in {word!r} is not a label name")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    elif '"' in value:
        raise AlertsConfigError(f"{word!r}: unbalanced double quote")
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise AlertsConfigError(f"{word!r}: bad regular expression: {exc}") from None
    return Matcher(name, op, value)


@dataclasses.dataclass(frozen=True)
class AlertState:
    """What Alertmanager said last: the firing alerts' names, or why it could not be asked."""

    firing: tuple[str, ...] = ()
    error: str = ""

    @property
    def holds(self) -> bool:
        """Whether voluntary work waits (an alert fires, or Alertmanager is unreachable)."""
        return bool(self.firing or self.error)

    def describe(self) -> str:
        """`alert HighErrorRate firing`, `Alertmanager unreachable: ...` or `no alert firing`."""
        if self.error:
            return f"Alertmanager unreachable: {self.error}"
        return describe_firing(self.firing)


def get_facts(state: AlertState | None) -> dict[str, Any]:
    """planner.Facts keyword arguments for `state` (None: no gate)."""
    if state is None:
        return {"alerts": None, "alerts_error": ""}
    return {"alerts": state.firing, "alerts_error": state.error}


def describe_firing(names: tuple[str, ...]) -> str:
    """One line naming the firing alerts (at most MAX_NAMES, then how many more)."""
    if not names:
        return "no alert firing"
    shown = ", ".join(names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    rest = f" and {more} more" if more > 0 else ""
    return f"alert{'s' if len(names) > 1 else ''} {shown}{rest} firing"


def parse_answer(data: Any) -> tuple[str, ...]:
    """The sorted distinct `alertname`s of an API v2 alert list; ValueError if it is not one."""
    if not isinstance(data, list):
        raise ValueError(f"expected a list of alerts, got {type(data).__name__}")
    names: set[str] = set()
    for item in data:
        labels = item.get("labels") if isinstance(item, dict) else None
        if not isinstance(labels, dict):
            raise ValueError("an alert without labels")
        name = labels.get("alertname")
        names.add(name if isinstance(name, str) and name else "(unnamed)")
    return tuple(sorted(names))


def fetch(url: str, timeout: float = TIMEOUT) -> Any:
    """GET `url` and decode its JSON (blocking: run it in a thread); OSError/ValueError."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if parts.scheme == "https":
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            parts.netloc, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        conn.request("GET", target, headers={"Accept": "application/json"})
        answer = conn.getresponse()
        body = answer.read(MAX_ANSWER + 1)
        if answer.status != 200:
            text = body[:200].decode("utf-8", "replace").strip()
            raise ValueError(f"HTTP {answer.status} {answer.reason}: {text}".strip(": "))
        if len(body) > MAX_ANSWER:
            raise ValueError(f"answer longer than {MAX_ANSWER} bytes")
        return json.loads(body)
    finally:
        conn.close()


async def fetch_async(url: str, timeout: float = TIMEOUT) -> Any:
    """`fetch` in a worker thread, with an overall deadline of `timeout` plus a second."""
    return await asyncio.wait_for(asyncio.to_thread(fetch, url, timeout), timeout + 1.0)


Fetcher = Callable[[str], Awaitable[Any]]


class AlertGate:
    """Asks Alertmanager at most once per CACHE_SECONDS and keeps the answer for the planner."""

    def __init__(
        self,
        get_option: Callable[[], str],
        now: Callable[[], datetime.datetime],
        fetcher: Fetcher = fetch_async,
    ) -> None:
        self._get_option = get_option
        self._now = now
        self._fetch = fetcher
        self._asked: tuple[str, datetime.datetime] | None = None
        self._state: AlertState | None = None

    @property
    def state(self) -> AlertState | None:
        """The last answer (None: no gate configured, or not asked yet)."""
        return self._state

    async def refresh(self) -> AlertState | None:
        """Ask Alertmanager unless the last answer is fresh; None when no gate is configured."""
        option = self._get_option()
        try:
            config = parse_config(option)
        except AlertsConfigError as exc:
            # The settings are checked when loaded: this is only a guard.
            return self._set(AlertState(error=f"block-on-alerts: {exc}"))
        if config is None:
            self._asked = None
            return self._set(None)
        now = self._now()
        if self._asked is not None and self._asked[0] == option:
            age = (now - self._asked[1]).total_seconds()
            if 0 <= age < CACHE_SECONDS:
                return self._state
        self._asked = (option, now)
        try:
            firing = parse_answer(await self._fetch(config.get_query_url()))
        except (OSError, ValueError, asyncio.TimeoutError, http.client.HTTPException) as exc:
            return self._set(AlertState(error=_reason(exc)))
        return self._set(AlertState(firing=firing))

    def _set(self, state: AlertState | None) -> AlertState | None:
        before = self._state
        self._state = state
        if state != before:
            if state is not None and state.holds:
                logger.warning("voluntary work held by block-on-alerts: %s", state.describe())
            elif before is not None and before.holds:
                logger.info("block-on-alerts: no alert firing any more, voluntary work resumes")
        return state


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"no answer within {TIMEOUT:g}s"
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
