"""Change windows: the parser and the calendar, table-driven (time passed in)."""

from __future__ import annotations

import datetime

import pytest

from whirlwind import windows

UTC = datetime.timezone.utc


def _utc(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days", "start", "end", "zone"),
    [
        ("mon-fri 09:00-17:00 Europe/London", {0, 1, 2, 3, 4}, 540, 1020, "Europe/London"),
        ("sat 10:00-12:00 UTC", {5}, 600, 720, "UTC"),
        ("10:00-12:00", set(range(7)), 600, 720, "UTC"),
        ("daily 22:00-02:00 Asia/Tokyo", set(range(7)), 1320, 120, "Asia/Tokyo"),
        ("fri-mon 00:00-24:00", {4, 5, 6, 0}, 0, 1440, "UTC"),
        ("Mon,wed-thu 9:30-10:00", {0, 2, 3}, 570, 600, "UTC"),
        ("  sun   01:00-03:00   America/New_York ", {6}, 60, 180, "America/New_York"),
    ],
)
def test_entries_parse(text: str, days: set[int], start: int, end: int, zone: str) -> None:
    (window,) = windows.parse_windows(text).windows

    assert (window.days, window.start, window.end, window.zone) == (days, start, end, zone)


def test_several_entries_and_empty_text() -> None:
    schedule = windows.parse_windows("mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC;")

    assert len(schedule.windows) == 2
    assert schedule.text == "mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC"
    assert windows.parse_windows("").always
    assert windows.parse_windows(" ; ").always


EXAMPLE = "(for example 'mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC')"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mon-fr 09:00-17:00", "windows: 'mon-fr 09:00-17:00': unknown day 'fr' (use mon, "
         "tue, wed, thu, fri, sat, sun, a range such as mon-fri, or daily)"),
        ("mon 9-17", f"windows: 'mon 9-17' is not [days] HH:MM-HH:MM [zone] {EXAMPLE}"),
        ("monday", f"windows: 'monday' is not [days] HH:MM-HH:MM [zone] {EXAMPLE}"),
        ("mon 09:00-17:00 Europe/London extra",
         f"windows: 'mon 09:00-17:00 Europe/London extra' is not [days] HH:MM-HH:MM [zone] "
         f"{EXAMPLE}"),
        ("mon 25:00-26:00", "windows: 'mon 25:00-26:00': '25:00' is not a time HH:MM such as "
         "09:00"),
        ("mon 09:60-10:00", "windows: 'mon 09:60-10:00': '09:60' is not a time HH:MM such as "
         "09:00"),
        ("mon 24:00-10:00", "windows: 'mon 24:00-10:00': '24:00' is not a time HH:MM such as "
         "09:00"),
        ("mon 09:00-17:00 Mars/Olympus", "windows: 'mon 09:00-17:00 Mars/Olympus': unknown "
         "time zone 'Mars/Olympus' (use an IANA name such as Europe/London or UTC)"),
        ("mon 09:00-09:00", "windows: 'mon 09:00-09:00': the window is empty (start equals end)"),
    ],
)  # fmt: skip
def test_bad_windows_name_the_part_and_show_the_form(text: str, message: str) -> None:
    with pytest.raises(windows.WindowError) as error:
        windows.parse_windows(text)

    assert str(error.value) == message


def test_the_option_name_is_used_in_messages() -> None:
    with pytest.raises(windows.WindowError, match=r"^policies: web: windows: 'x'"):
        windows.parse_windows("x", option="policies: web: windows")


# -- the calendar ----------------------------------------------------------------------------

OFFICE = "mon-fri 09:00-17:00 Europe/London; sat 10:00-12:00 UTC"


@pytest.mark.parametrize(
    ("text", "now", "is_open", "opens", "closes"),
    [
        # Monday 30 November 2026, London is on GMT (= UTC).
        (OFFICE, "2026-11-30 08:59", False, "2026-11-30 09:00", None),
        (OFFICE, "2026-11-30 09:00", True, None, "2026-11-30 17:00"),
        (OFFICE, "2026-11-30 16:59", True, None, "2026-11-30 17:00"),
        (OFFICE, "2026-11-30 17:00", False, "2026-12-01 09:00", None),
        # Friday evening: next is Saturday's UTC window.
        (OFFICE, "2026-12-04 18:00", False, "2026-12-05 10:00", None),
        (OFFICE, "2026-12-05 11:00", True, None, "2026-12-05 12:00"),
        # Saturday after the window: Monday.
        (OFFICE, "2026-12-05 12:00", False, "2026-12-07 09:00", None),
        # Summer: London is UTC+1.
        (OFFICE, "2026-07-01 08:30", True, None, "2026-07-01 16:00"),
        (OFFICE, "2026-07-01 16:00", False, "2026-07-02 08:00", None),
        # Across midnight: opens Friday 22:00 Berlin (21:00 UTC in winter), closes Saturday.
        ("fri 22:00-02:00 Europe/Berlin", "2026-12-04 20:59", False, "2026-12-04 21:00", None),
        ("fri 22:00-02:00 Europe/Berlin", "2026-12-05 00:30", True, None, "2026-12-05 01:00"),
        ("fri 22:00-02:00 Europe/Berlin", "2026-12-05 01:00", False, "2026-12-11 21:00", None),
        # A zone east of UTC whose local Monday starts on Sunday in UTC.
        ("mon 06:00-08:00 Asia/Tokyo", "2026-11-29 21:00", True, None, "2026-11-29 23:00"),
        # Touching windows make one.
        ("10:00-12:00; 12:00-13:00", "2026-11-30 11:00", True, None, "2026-11-30 13:00"),
        ("daily 00:00-24:00", "2026-11-30 11:00", True, None, None),  # no end in sight
    ],
)
def test_calendar(
    text: str, now: str, is_open: bool, opens: str | None, closes: str | None
) -> None:
    schedule = windows.parse_windows(text)
    at = _utc(now)

    assert schedule.is_open(at) is is_open
    assert schedule.opens_at(at) == (_utc(opens) if opens else None)
    assert schedule.closes_at(at) == (_utc(closes) if closes else None)


def test_no_windows_is_always_open() -> None:
    schedule = windows.parse_windows("")
    at = _utc("2026-11-30 03:00")

    assert schedule.is_open(at)
    assert (schedule.opens_at(at), schedule.closes_at(at)) == (None, None)


# -- daylight saving time: both changes, two zones -------------------------------------------


@pytest.mark.parametrize(
    ("text", "day", "opens", "closes"),
    [
        # Europe/London, 29 March 2026: 01:00 GMT -> 02:00 BST.
        ("daily 09:00-17:00 Europe/London", "2026-03-29", "2026-03-29 08:00", "2026-03-29 16:00"),
        # A window in the skipped hour opens when the clock jumps, and ends at its time.
        ("daily 01:30-03:00 Europe/London", "2026-03-29", "2026-03-29 01:00", "2026-03-29 02:00"),
        # Across the change at night: 7 hours on the wall clock, 6 real hours.
        ("daily 23:00-06:00 Europe/London", "2026-03-28", "2026-03-28 23:00", "2026-03-29 05:00"),
        # Europe/London, 25 October 2026: 02:00 BST -> 01:00 GMT; 01:xx happens twice.
        ("daily 01:30-03:00 Europe/London", "2026-10-25", "2026-10-25 00:30", "2026-10-25 03:00"),
        ("daily 00:00-01:30 Europe/London", "2026-10-25", "2026-10-24 23:00", "2026-10-25 00:30"),
        ("daily 23:00-06:00 Europe/London", "2026-10-24", "2026-10-24 22:00", "2026-10-25 06:00"),
        # America/New_York, 8 March 2026: 02:00 EST -> 03:00 EDT.
        ("daily 02:30-04:00 America/New_York", "2026-03-08", "2026-03-08 07:00",
         "2026-03-08 08:00"),
        # America/New_York, 1 November 2026: 02:00 EDT -> 01:00 EST.
        ("daily 01:00-02:00 America/New_York", "2026-11-01", "2026-11-01 05:00",
         "2026-11-01 07:00"),
    ],
)  # fmt: skip
def test_daylight_saving_days_behave_as_the_wall_clock(
    text: str, day: str, opens: str, closes: str
) -> None:
    (window,) = windows.parse_windows(text).windows

    assert window.spans(datetime.date.fromisoformat(day)) == (_utc(opens), _utc(closes))


def test_first_at_in_a_gap_is_the_jump_and_in_a_fold_the_first_time() -> None:
    london = windows.parse_windows("01:00-02:00 Europe/London").windows[0].get_tz()

    spring = windows.first_at(datetime.date(2026, 3, 29), 90, london)
    autumn = windows.first_at(datetime.date(2026, 10, 25), 90, london)

    assert spring == _utc("2026-03-29 01:00")  # 02:00 BST, the first minute after 01:30
    assert autumn == _utc("2026-10-25 00:30")  # 01:30 BST, the first of two


def test_a_week_of_windows_from_hour_to_hour() -> None:
    schedule = windows.parse_windows(OFFICE)
    start = _utc("2026-11-30 00:00")  # a Monday
    hours = [start + datetime.timedelta(hours=h) for h in range(7 * 24)]

    open_hours = [h for h in hours if schedule.is_open(h)]

    assert len(open_hours) == 5 * 8 + 2
    assert {h.weekday() for h in open_hours} == {0, 1, 2, 3, 4, 5}
