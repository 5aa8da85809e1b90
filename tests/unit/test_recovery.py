"""Pure decisions for work left in flight: holds, proof of provenance, where to resume."""

from __future__ import annotations

import datetime
import pathlib
from typing import Any

import pytest

from tests.unit import inmemory_backend as imb
from whirlwind import model as model_view
from whirlwind import policy, provenance, recovery

KEY = b"k"
BORN = "2026-11-29T09:00:00+00:00"
NOW = datetime.datetime(2026, 11, 29, 9, 5, tzinfo=datetime.timezone.utc)


def _view(**marks: dict[str, str]) -> model_view.ModelView:
    view = model_view.ModelView()
    view.apply_deltas(
        [
            ["model", "change", {"name": "m", "is-controller": False}],
            ["application", "change", {"name": "app"}],
            *(
                [
                    "unit",
                    "change",
                    {
                        "name": f"app/{n}",
                        "application": "app",
                        "machine-id": str(n),
                        "workload-status": {"current": "active"},
                        "agent-status": {"current": "idle"},
                    },
                ]
                for n in range(2)
            ),
        ]
    )
    for unit, values in marks.items():
        view.annotations[model_view.unit_tag(unit.replace("_", "/"))] = values
    return view


def _signed(old: str = "app/0", new: str = "app/1", born: str = BORN) -> dict[str, str]:
    return {
        provenance.OP_ANNOTATION: "3-abc",
        provenance.SIG_ANNOTATION: provenance.sign(
            KEY, op_id="3-abc", service="app", old_unit=old, new_unit=new, born=born
        ),
    }


def _settings(**overrides: Any) -> Any:
    return imb.make_settings(pathlib.Path("/nonexistent"), **overrides)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("signed", None),
        ("not-a-target", "app is not a target (services)"),
        ("unsigned", "app/0 has no whirlwind/sig annotation"),
        ("other-key", "the whirlwind/sig annotation of app/0 does not match"),
        ("no-born", "app/1 has no whirlwind/born annotation"),
        ("born-changed", "the whirlwind/sig annotation of app/0 does not match"),
        ("swapped-units", "the whirlwind/sig annotation of app/0 does not match"),
        ("own-app", "Whirlwind never replaces its own units"),
    ],
)
def test_only_signed_operations_on_targets_are_adopted(case: str, expected: str | None) -> None:
    old, new = _signed(), {**_signed(), provenance.BORN_ANNOTATION: BORN}
    settings = _settings(services=("app",))
    if case == "not-a-target":
        settings = _settings(services=("web",))
    elif case == "unsigned":
        old = {provenance.OP_ANNOTATION: "3-abc"}
    elif case == "other-key":
        forged = provenance.sign(
            b"guess", op_id="3-abc", service="app", old_unit="app/0", new_unit="app/1", born=BORN
        )
        old = {**old, provenance.SIG_ANNOTATION: forged}
    elif case == "no-born":
        new = _signed()
    elif case == "born-changed":
        new = {**new, provenance.BORN_ANNOTATION: "2020-01-01T00:00:00+00:00"}
    elif case == "swapped-units":
        old = new = {**_signed(old="app/1", new="app/0"), provenance.BORN_ANNOTATION: BORN}
    elif case == "own-app":
        settings = _settings(services=("app",), own_application="app")
    view = _view(app_0=old, app_1=new)
    (foreign,) = recovery.find_foreign(view, known_ops=(), busy_apps=())

    assert recovery.why_not_adopt(foreign, view, settings, KEY) == expected


@pytest.mark.parametrize(
    ("paused", "dry_run", "seen", "controller", "expected"),
    [
        (False, False, True, False, None),
        (True, False, True, False, recovery.PAUSED),
        (False, True, True, False, recovery.DRY_RUN),
        (False, False, False, False, "the model's own information has not arrived yet"),
        (False, False, True, True, "the controller model is never touched"),
    ],
)
def test_work_left_in_flight_is_held_like_new_work(
    paused: bool, dry_run: bool, seen: bool, controller: bool, expected: str | None
) -> None:
    view = model_view.ModelView()
    view.model_seen, view.is_controller_model = seen, controller

    assert recovery.get_hold(_settings(dry_run=dry_run), paused, view) == expected


def test_an_adopted_operation_resumes_at_settle_with_its_original_deadline() -> None:
    view = _view(app_0=_signed(), app_1={**_signed(), provenance.BORN_ANNOTATION: BORN})
    (foreign,) = recovery.find_foreign(view, known_ops=(), busy_apps=())

    plan = recovery.plan_adoption(foreign, view, _settings(settle_timeout=600), NOW)

    assert (plan.step, plan.old_unit, plan.new_unit, plan.max_unit_number) == (
        "settle", "app/0", "app/1", 0,
    )  # fmt: skip
    assert plan.deadline == datetime.datetime(2026, 11, 29, 9, 10, tzinfo=datetime.timezone.utc)
    assert isinstance(foreign, policy.ForeignOperation)


def test_a_busy_or_known_application_is_not_looked_at() -> None:
    view = _view(app_0=_signed(), app_1={**_signed(), provenance.BORN_ANNOTATION: BORN})

    assert recovery.find_foreign(view, known_ops={"3-abc"}, busy_apps=()) == []
    assert recovery.find_foreign(view, known_ops=(), busy_apps={"app"}) == []


def test_the_local_key_is_made_once_and_private(tmp_path: pathlib.Path) -> None:
    first = provenance.local_key(tmp_path / "state")
    again = provenance.local_key(tmp_path / "state")

    assert first == again
    assert len(first) == 64
    assert ((tmp_path / "state" / provenance.KEY_FILE).stat().st_mode & 0o777) == 0o600
