"""DMS_JOBSCH frequency codes -> cron, plus the rules cron cannot say (every 14 days,
last day of the month, STRDT / ENDDT), checked when a tick comes.

YR yearly on FRQDD 'MM-DD' (default Jan 1); HY Jan and Jul, QT Jan/Apr/Jul/Oct, on day
FRQDD (a day of month, or the DD of 'MM-DD'; default 1); MN monthly on day FRQDD, 'L' =
last day; FN every 14 days on weekday FRQDD counted from STRDT; WK weekly on weekday
FRQDD (MON..SUN); DL daily; ID every FRQMI minutes, or FRQHH hours when FRQMI is 0.
FRQHH:FRQMI is the time of day for all but ID. describe() says a row in words.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime

from dms_orchestration.metadata.models import Schedule
from dms_orchestration.vocabulary import Frequency, codes

WEEKDAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
DAY_NAMES = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class FrequencyError(ValueError):
    pass


@dataclass(frozen=True)
class Clock:
    cron: str
    last_day_of_month: bool = False  # MN 'L': cron fires on 28-31, the tick checks
    fortnight_anchor: date | None = None  # FN: fire only on even weeks from this date


def _int(value, what: str, low: int, high: int, default: int) -> int:
    if value is None or str(value).strip() == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise FrequencyError(f"{what} {value!r} is not a number") from None
    if not low <= number <= high:
        raise FrequencyError(f"{what} {number} is not between {low} and {high}")
    return number


def _day_of_month(day: str | None) -> int:
    text = (day or "").strip()
    if "-" in text:  # 'MM-DD'
        text = text.split("-", 1)[1]
    return _int(text, "FRQDD day of month", 1, 31, 1)


def _weekday(day: str | None, code: str) -> int:
    text = (day or "").strip().upper()[:3]
    if text not in WEEKDAYS:
        raise FrequencyError(f"{code} needs FRQDD as a weekday MON..SUN, got {day!r}")
    return WEEKDAYS[text]


def clock_for(s: Schedule) -> Clock:
    """The cron of a schedule; a FrequencyError names what is wrong with the row."""
    code = (s.frequency or "").strip().upper()
    if code not in codes(Frequency):
        raise FrequencyError(f"FRQCD {s.frequency!r} is not one of {', '.join(Frequency)}")
    if code == Frequency.ID:
        minutes = _int(s.minute, "FRQMI", 0, 59, 0)
        hours = _int(s.hour, "FRQHH", 0, 23, 0)
        if minutes:
            return Clock(f"*/{minutes} * * * *")
        if hours:
            return Clock(f"0 */{hours} * * *")
        raise FrequencyError("ID needs FRQMI (minutes) or FRQHH (hours) above 0")
    hh = _int(s.hour, "FRQHH", 0, 23, 0)
    mi = _int(s.minute, "FRQMI", 0, 59, 0)
    if code == Frequency.DL:
        return Clock(f"{mi} {hh} * * *")
    if code == Frequency.WK:
        return Clock(f"{mi} {hh} * * {_weekday(s.day, code)}")
    if code == Frequency.FN:
        if s.start is None:
            raise FrequencyError("FN (every 14 days) counts from STRDT, which is empty")
        start = s.start.date() if isinstance(s.start, datetime) else s.start
        return Clock(f"{mi} {hh} * * {_weekday(s.day, code)}", fortnight_anchor=start)
    if code == Frequency.MN:
        if (s.day or "").strip().upper() == "L":
            return Clock(f"{mi} {hh} 28-31 * *", last_day_of_month=True)
        return Clock(f"{mi} {hh} {_day_of_month(s.day)} * *")
    if code == Frequency.YR:
        text = (s.day or "01-01").strip()
        month, _, day = text.partition("-")
        month_n = _int(month, "FRQDD month", 1, 12, 1)
        day_n = _int(day, "FRQDD day", 1, 31, 1)
        if day_n > calendar.monthrange(2000, month_n)[1]:  # 2000: a leap year
            raise FrequencyError(f"FRQDD {s.day!r} is not a day of the year")
        return Clock(f"{mi} {hh} {day_n} {month_n} *")
    months = "1,7" if code == Frequency.HY else "1,4,7,10"
    return Clock(f"{mi} {hh} {_day_of_month(s.day)} {months} *")


def skip_reason(s: Schedule, clock: Clock, tick: datetime) -> str | None:
    """Why a tick (in DMS_TIMEZONE) does not run, or None when it does."""
    day = tick.date()
    start = s.start.date() if isinstance(s.start, datetime) else s.start
    end = s.end.date() if isinstance(s.end, datetime) else s.end
    if start and day < start:
        return f"before STRDT {start}"
    if end and day > end:
        return f"after ENDDT {end}"
    if clock.last_day_of_month and day.day != calendar.monthrange(day.year, day.month)[1]:
        return "not the last day of the month"
    if clock.fortnight_anchor is not None:
        weeks = (day - clock.fortnight_anchor).days // 7
        if weeks % 2:
            return f"off week of the 14-day cycle counted from {clock.fortnight_anchor}"
    return None


def _every(count: int, unit: str) -> str:
    return f"every {unit}" if count == 1 else f"every {count} {unit}s"


def _date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def describe(s: Schedule) -> str:
    """A schedule row in words: "monthly on the last day of the month at 23:00", "every 15
    minutes", "weekly on Monday at 03:30", with its STRDT / ENDDT. Raises FrequencyError
    for a row that makes no clock (as clock_for)."""
    clock = clock_for(s)
    code = (s.frequency or "").strip().upper()
    if code == Frequency.ID:
        minutes, hours = _int(s.minute, "FRQMI", 0, 59, 0), _int(s.hour, "FRQHH", 0, 23, 0)
        text = _every(minutes, "minute") if minutes else _every(hours, "hour")
    else:
        at = f"at {_int(s.hour, 'FRQHH', 0, 23, 0):02d}:{_int(s.minute, 'FRQMI', 0, 59, 0):02d}"
        text = f"{_when(s, code, clock)} {at}"
    if s.start is not None and code != Frequency.FN:  # (FN says it with its cycle)
        text += f", from {_date(s.start)}"
    if s.end is not None:
        text += f", until {_date(s.end)}"
    return text


def _when(s: Schedule, code: str, clock: Clock) -> str:
    """The days a (non-ID) schedule runs on."""
    if code == Frequency.DL:
        return "daily"
    if code in (Frequency.WK, Frequency.FN):
        day = DAY_NAMES[_weekday(s.day, code)]
        if code == Frequency.WK:
            return f"weekly on {day}"
        return f"every 14 days on {day}, counted from {clock.fortnight_anchor},"
    if code == Frequency.MN:
        if clock.last_day_of_month:
            return "monthly on the last day of the month"
        return f"monthly on day {_day_of_month(s.day)}"
    if code == Frequency.YR:
        _, _, day, month, _ = clock.cron.split()
        return f"yearly on {calendar.month_name[int(month)]} {day}"
    day = _day_of_month(s.day)
    if code == Frequency.HY:
        return f"half-yearly (January and July) on day {day}"
    return f"quarterly (January, April, July, October) on day {day}"
