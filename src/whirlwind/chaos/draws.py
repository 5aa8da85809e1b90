"""The draw at each chaos tick: seeded, reproducible, replayable (pure).

A *tick* is a multiple of the chaos interval after the arming time: tick n is due at
`armed_at + n * interval` (n >= 1: arming never injects at once, which leaves a moment to
disarm). A tick is decided at most once, at the first look at or after its time while the
guard lets the application be eligible; a tick still undecided when the next one is due is
skipped. Only decided (eligible) ticks count for `pattern`: `k/n` injects on the first k of
every n eligible ticks of the arming (position 0, 1, ... in the order they were decided).

With `chance`, the draw is a uniform number from HMAC-SHA256 keyed by the seed over
`service:tick:purpose`: it depends on nothing but the seed, the application and the tick
number, never on what happened to other applications or on earlier draws. The same uniform
(other purposes) picks the kind and the victim among the candidates, so a recorded draw can
be replayed: the same seed and the same facts (kinds and candidates) give the same injection.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from whirlwind import pausing
from whirlwind.chaos import policy as chaos_policy

DAY = datetime.timedelta(days=1)
INJECT = "inject"
KIND = "kind"
VICTIM = "victim"


def uniform(seed: int, service: str, tick: int, purpose: str) -> float:
    """A number in [0, 1) fixed by the seed, the application, the tick and the purpose."""
    message = f"{service}:{tick}:{purpose}".encode()
    digest = hmac.new(str(seed).encode(), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def pick(seed: int, service: str, tick: int, purpose: str, options: Sequence[str]) -> str | None:
    """One of `options` (in their order) chosen by the seeded draw (None: no options)."""
    if not options:
        return None
    return options[int(uniform(seed, service, tick, purpose) * len(options))]


def tick_at(armed_at: datetime.datetime, interval: int, tick: int) -> datetime.datetime:
    """When tick `tick` is due."""
    return armed_at + datetime.timedelta(seconds=interval * tick)


def current_tick(armed_at: datetime.datetime, interval: int, now: datetime.datetime) -> int:
    """The latest tick due at `now` (0: none yet)."""
    if now < armed_at:
        return 0
    return int((now - armed_at).total_seconds() // interval)


def count_recent(times: Iterable[datetime.datetime], now: datetime.datetime) -> int:
    """Injections in the rolling 24 hours up to `now`."""
    return sum(1 for t in times if now - DAY < t <= now)


def next_allowed(
    times: Iterable[datetime.datetime], now: datetime.datetime, max_per_day: int
) -> datetime.datetime | None:
    """When the rolling 24 hours hold fewer than `max_per_day` again (None: they do now)."""
    recent = sorted(t for t in times if now - DAY < t <= now)
    if len(recent) < max_per_day:
        return None
    # The window must lose len - max + 1 injections: the oldest of those leaves last.
    return recent[len(recent) - max_per_day] + DAY


@dataclasses.dataclass(frozen=True)
class Draw:
    """One decided chaos tick: the facts it was drawn against and what it decided."""

    service: str
    tick: int
    armed_at: datetime.datetime
    at: datetime.datetime  # when it was decided
    rule: str  # `chance 0.1` or `pattern 2/3`
    position: int  # among the arming's decided ticks of this application, from 0
    value: float | None  # the chance draw (None: pattern)
    inject: bool
    kinds: tuple[str, ...] = ()  # the kinds that had a candidate
    kind: str | None = None
    candidates: tuple[str, ...] = ()  # units that could take `kind`, in order
    victim: str | None = None
    # When a timed injection ends (None: none, or kill-unit and kill-machine).
    until: datetime.datetime | None = None

    def to_state(self) -> dict[str, Any]:
        """JSON for the journal."""
        return {
            "service": self.service,
            "tick": self.tick,
            "armed-at": self.armed_at.isoformat(),
            "at": self.at.isoformat(),
            "rule": self.rule,
            "position": self.position,
            "value": self.value,
            "inject": self.inject,
            "kinds": list(self.kinds),
            "kind": self.kind,
            "candidates": list(self.candidates),
            "victim": self.victim,
            "until": self.until.isoformat() if self.until is not None else None,
        }

    @classmethod
    def from_state(cls, data: Any) -> Draw | None:
        """The draw from `to_state`'s JSON (None: malformed)."""
        if not isinstance(data, Mapping):
            return None
        armed_at = pausing.parse_time(data.get("armed-at"))
        at = pausing.parse_time(data.get("at"))
        service, tick, position = data.get("service"), data.get("tick"), data.get("position")
        value, rule = data.get("value"), data.get("rule")
        kinds, candidates = data.get("kinds"), data.get("candidates")
        if (
            armed_at is None
            or at is None
            or not isinstance(service, str)
            or not isinstance(rule, str)
            or not isinstance(tick, int)
            or not isinstance(position, int)
            or isinstance(tick, bool)
            or isinstance(position, bool)
            or not (value is None or (isinstance(value, float) and 0 <= value < 1))
            or not isinstance(kinds, list)
            or not isinstance(candidates, list)
            or not all(isinstance(k, str) for k in [*kinds, *candidates])
        ):
            return None
        kind, victim = data.get("kind"), data.get("victim")
        return cls(
            service=service,
            tick=tick,
            armed_at=armed_at,
            at=at,
            rule=rule,
            position=position,
            value=value,
            inject=data.get("inject") is True,
            kinds=tuple(kinds),
            kind=kind if isinstance(kind, str) else None,
            candidates=tuple(candidates),
            victim=victim if isinstance(victim, str) else None,
            until=pausing.parse_time(data.get("until")),
        )


@dataclasses.dataclass(frozen=True)
class Decision:
    """What a tick decides: whether to inject, the draw, the kind and the victim."""

    inject: bool
    value: float | None
    kind: str | None = None
    candidates: tuple[str, ...] = ()
    victim: str | None = None


def decide(
    seed: int,
    service: str,
    tick: int,
    position: int,
    policy: chaos_policy.ChaosPolicy,
    options: Mapping[str, Sequence[str]],
) -> Decision:
    """The decision of one eligible tick; `options` maps each kind to its candidate units.

    Kinds are tried in the policy's order; only kinds with a candidate can be picked.
    """
    rule = policy.describe_rule()
    kinds = tuple(k for k in policy.kinds if options.get(k))
    return _decide(seed, service, tick, position, rule, kinds, options)


def _decide(
    seed: int,
    service: str,
    tick: int,
    position: int,
    rule: str,
    kinds: Sequence[str],
    options: Mapping[str, Sequence[str]],
) -> Decision:
    name, _, amount = rule.partition(" ")
    value: float | None = None
    if name == "pattern":
        k, _, n = amount.partition("/")
        hit = chaos_policy.Pattern(int(k), int(n)).hits(position)
    else:
        value = uniform(seed, service, tick, INJECT)
        hit = value < float(amount)
    kind = pick(seed, service, tick, KIND, kinds) if hit else None
    if kind is None:
        return Decision(False, value)
    candidates = tuple(options[kind])
    victim = pick(seed, service, tick, VICTIM, candidates)
    return Decision(True, value, kind, candidates, victim)


def get_position(draws: Iterable[Draw], service: str, armed_at: datetime.datetime) -> int:
    """The position of the next eligible tick: how many ticks this arming decided already."""
    return sum(1 for d in draws if d.service == service and d.armed_at == armed_at)


def replay(seed: int, draws: Sequence[Draw]) -> list[Draw]:
    """The recorded draws decided again from `seed` and their own facts (kinds, candidates).

    The recorded candidates stand for the model at that tick (a draw that did not inject
    recorded none). The result equals `draws` when they came from this seed.
    """
    replayed = []
    for draw in draws:
        options = {kind: draw.candidates for kind in draw.kinds}
        decision = _decide(
            seed, draw.service, draw.tick, draw.position, draw.rule, draw.kinds, options
        )
        replayed.append(
            dataclasses.replace(
                draw,
                value=decision.value,
                inject=decision.inject,
                kind=decision.kind,
                candidates=decision.candidates,
                victim=decision.victim,
                until=draw.until if decision.inject else None,
            )
        )
    return replayed


def find_mismatches(seed: int, draws: Sequence[Draw]) -> list[str]:
    """How the recorded draws differ from a replay with `seed` (empty: they match)."""
    found = []
    for recorded, again in zip(draws, replay(seed, draws), strict=True):
        if recorded != again:
            found.append(
                f"{recorded.service} tick {recorded.tick}: recorded "
                f"{_describe(recorded)}, replay gives {_describe(again)}"
            )
    return found


def _describe(draw: Draw) -> str:
    if not draw.inject:
        return "no injection"
    return f"{draw.kind} on {draw.victim}"
