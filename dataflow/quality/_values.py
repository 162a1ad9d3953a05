"""Values as the quality checks compare them: the leaves of a JSON value, numbers however they are
written, words folded for plurals, dates and times, and ``Evidence``, an index of the texts a value
may come from.

Readings (shared by grounding, echo and answer checks, so they agree on what "the same value" is):

- a number is the same whether written ``1,000``, ``1000``, ``1000.0``, ``1e3``, ``$1,000`` or
  ``1k``; ``15%`` also reads as ``0.15``; the words ``zero``..``twenty``, the tens, ``hundred``,
  ``dozen`` and the ordinals ``first``..``twelfth`` are numbers; a number is read whole, so
  ``10000`` never yields ``1000``;
- a string is compared as its lower-case words (``similarity.normalize_text``) with a trailing
  plural ``s``/``ies`` folded, contiguous and in order: ``New York`` is in ``I'm in new york city``
  but not in ``York``;
- a date is (year or None, month, day), read with dateutil from ISO or natural writing
  (``2024-03-15``, ``March 15, 2024``, ``15th of March``, ``03/15/2024``); a time is (hour, minute).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from typing import Any, Sequence

from .similarity import normalize_text
from .units import base_unit_values

# -- JSON leaves --------------------------------------------------------------------------------


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """``(path, leaf)`` for every non-container value inside ``value``, in order (dicts and lists
    are walked; the path reads ``items[0].name``)."""
    out: list[tuple[str, Any]] = []
    stack = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(item.items()))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(item))))
        else:
            out.append((where, item))
    return out


def maybe_json(text: Any) -> Any:
    """``text`` parsed when it is a JSON object or array, else ``text`` unchanged. Parsed values
    are cached by text and shared: read them, never change them."""
    if isinstance(text, str):
        stripped = text.strip()
        if stripped[:1] in ("{", "[") and stripped[-1:] in ("}", "]"):
            parsed = _parse_json(stripped)
            return text if parsed is _NOT_JSON else parsed
    return text


_NOT_JSON = object()


def value_leaves(value: Any) -> tuple[tuple[str, Any], ...]:
    """``leaves`` of ``value``, or of the JSON a text holds (a plain text is one leaf); cached
    for texts, since every check of a tool result reads the same leaves."""
    if isinstance(value, str):
        return _text_leaves(value)
    return tuple(leaves(value))


@lru_cache(maxsize=2048)
def _text_leaves(text: str) -> tuple[tuple[str, Any], ...]:
    value = maybe_json(text)
    return (("", text),) if isinstance(value, str) else tuple(leaves(value))


@lru_cache(maxsize=2048)
def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def number_key(value: float) -> float:
    """The comparison key of a number: 12 significant digits, which hide float noise such as
    ``1.1 * 1000`` and keep small values apart (``8.854e-12`` is not ``8.854e-11``, nor ``0``)."""
    return float(f"{float(value):.12g}")


# -- numbers in text ----------------------------------------------------------------------------
_NUMBER = re.compile(
    r"(?:(?<![\w.])|(?<=\d[xX\u00d7]))(?P<sign>[-\u2212])?"  # 1920x1080 is two numbers
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE](?P<exp>[-+]?\d+)|\s*[x\u00d7*]\s*10\s*\^\s*(?P<exp10>[-\u2212+]?\d+))?(?!\d)"
    r"(?P<scale>\s*(?:%|percent\b|per cent\b|k\b|thousand\b|million\b|mn\b|m\b|billion\b|bn\b|b\b))?",
    re.IGNORECASE,
)
#: "$1.2M" is 1,200,000; "5 m" (metres) also gives 5,000,000, which grounds nothing a person means
_SCALES = {"k": 1e3, "thousand": 1e3, "million": 1e6, "mn": 1e6, "m": 1e6, "billion": 1e9, "bn": 1e9, "b": 1e9}
_WHOLE_NUMBER = re.compile(
    r"^[\s$\u20ac\u00a3\u00a5]*[-\u2212+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:[eE][-+]?\d+)?\s*(?:%|[a-zA-Z]{1,3})?\s*$"
)
_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty").split()
_TENS = {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_ORDINALS = ("first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth").split()
NUMBER_WORDS: dict[str, int] = {
    **{word: n for n, word in enumerate(_UNITS)}, **_TENS, "hundred": 100, "dozen": 12,
    "once": 1, "twice": 2, "thrice": 3,
    **{word: n for n, word in enumerate(_ORDINALS, start=1)},
}


#: the counts a period word implies: "next week" -> 7 days, "compounded quarterly" -> 4 a year,
#: "next month" -> 1 month or 30 days, "a pair" -> 2
PERIOD_WORDS: dict[str, tuple[float, ...]] = {
    "week": (7.0,), "weeks": (7.0,), "fortnight": (14.0,), "month": (1.0, 30.0), "monthly": (12.0,),
    "quarterly": (4.0,), "annually": (1.0,), "yearly": (1.0,), "semiannually": (2.0,), "biannually": (2.0,),
    "decade": (10.0,), "century": (100.0,), "pair": (2.0,), "couple": (2.0,),
}
_ALPHA = re.compile(r"[a-z]+")
_PERIOD = re.compile(r"\b(?:" + "|".join(PERIOD_WORDS) + r")\b", re.IGNORECASE)
_DIGIT = re.compile(r"\d")


@lru_cache(maxsize=8192)
def numbers_in(text: str) -> tuple[float, ...]:
    """Every number written in ``text`` (digits or number words), as floats; ``15%`` gives 15
    and 0.15, ``2k`` gives 2 and 2000, ``twenty-five`` gives 20, 5 and 25, ``200,300`` (a
    thousands separator or a list without spaces) gives 200300, 200 and 300, ``8.854 x 10^-12``
    gives 8.854e-12; a period word gives the count it implies (``PERIOD_WORDS``: ``next week`` 7,
    ``quarterly`` 4), ``from rest`` a speed of 0."""
    out: list[float] = []
    for match in _NUMBER.finditer(text) if _DIGIT.search(text) else ():
        value = float(match.group("num").replace(",", ""))
        written_exponent = match.group("exp") or match.group("exp10")  # 1e-9, 8.854 x 10^-12
        if written_exponent:
            exponent = int(written_exponent.replace("\u2212", "-"))
            if abs(exponent) > 300:  # "8e0796" inside an id is not a number a person wrote
                continue
            value *= 10.0 ** exponent
        if match.group("sign"):
            value = -value
        out.append(value)
        if "," in match.group("num") and not written_exponent:  # 1,200 or the list 200,300,400
            out.extend(float(group) for group in match.group("num").split(","))
        scale = (match.group("scale") or "").strip().lower()
        if scale in ("%", "percent", "per cent"):
            out.append(value / 100)
        elif scale in _SCALES:
            out.append(value * _SCALES[scale])
    tokens = _ALPHA.findall(text.lower())
    if PERIOD_WORDS.keys() & tokens:
        for match in _PERIOD.finditer(text):
            before = text[: match.start()].split()[-1:]  # "three weeks" is 21 days, not 7
            if not before or not (before[0].lower() in NUMBER_WORDS or _DIGIT.search(before[0])):
                out.extend(PERIOD_WORDS[match.group(0).lower()])
    if "rest" in tokens and re.search(r"\b(?:from|at)\s+rest\b", text, re.IGNORECASE):
        out.append(0.0)  # "starts from rest": a speed of 0
    if NUMBER_WORDS.keys() & tokens:
        previous_tens = 0
        for token in tokens:
            n = NUMBER_WORDS.get(token)
            if n is not None:
                out.append(float(n))
                if previous_tens and 0 < n < 10:
                    out.append(float(previous_tens + n))  # twenty five, twenty-five
            previous_tens = n if n is not None and n >= 20 and n % 10 == 0 and n < 100 else 0
    return tuple(out)


def as_number(value: Any) -> float | None:
    """``value`` as a number when it is one or a string that is only a number (with an optional
    currency sign, ``%`` or short unit: ``"$1,200"``, ``"1e3"``, ``"5km"``); else None."""
    if is_number(value):
        return float(value)
    if isinstance(value, str) and _WHOLE_NUMBER.match(value):
        found = numbers_in(value.replace("+", ""))
        if found:
            return found[0]
    return None


# -- words --------------------------------------------------------------------------------------


_IRREGULAR_PLURALS = {"women": "woman", "men": "man", "children": "child", "people": "person", "feet": "foot",
                      "teeth": "tooth", "mice": "mouse", "geese": "goose"}


def fold(word: str) -> str:
    """A word with a trailing plural folded (``cities`` -> ``city``, ``recipes`` -> ``recipe``,
    ``women`` -> ``woman``)."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@lru_cache(maxsize=8192)
def words(text: str) -> tuple[str, ...]:
    """Lower-case, plural-folded words and numbers of ``text``; a number and the unit written
    against it are two words (``5cm`` -> ``5``, ``cm``)."""
    return tuple(fold(w) for w in plain_tokens(text))


def plain_tokens(text: str) -> list[str]:
    """The lower-case words and numbers of ``text`` as written (``words`` folds their plurals);
    a number and the unit written against it are two (``5cm`` -> ``5``, ``cm``)."""
    return _NUMBER_THEN_LETTER.sub(" ", normalize_text(text)).split()


_NUMBER_THEN_LETTER = re.compile(r"(?<=\d)(?=[a-z])")


STOPWORDS = frozenset(
    "a an the and or but of to in on at for from by with about as into than then so is are was were be been "
    "being am do does did have has had i me my we our you your he she it its they them their this that these "
    "those there here what which who whom whose when where why how can could would should will shall may might "
    "must not no yes if also just very please thank thanks all any some each every more most other such only "
    "own same too up down out over under again once".split()
)


# -- dates and times ----------------------------------------------------------------------------
MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
               "november", "december")
#: a month written as a word: its name, or its three-letter abbreviation (``sept`` too)
MONTH_WORDS: dict[str, int] = {**{name: i for i, name in enumerate(MONTH_NAMES, 1)},
                               **{name[:3]: i for i, name in enumerate(MONTH_NAMES, 1)}, "sept": 9}
_MONTH = rf"(?:{'|'.join(n[:3] for n in MONTH_NAMES)}|sept)[a-z]*\.?"
_DAY = r"\d{1,2}(?:st|nd|rd|th)?"
_DATE_CANDIDATE = re.compile(  # 2024-03-15, 2024/03/15, 03/15/2024, 15-03-2024, 15th March 2024, Mar.15,2024
    rf"\b(?:\d{{4}}[-/.]\d{{1,2}}[-/.]\d{{1,2}}"
    rf"|\d{{1,2}}[-/.]\d{{1,2}}[-/.]\d{{2,4}}"
    rf"|{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s*\d{{4}})?"
    rf"|{_MONTH}\s*{_DAY}(?:,?\s*\d{{4}})?)(?![\w])",
    re.IGNORECASE,
)
_TIME_CANDIDATE = re.compile(
    r"\b(?:\d{1,2}(?::\d{2}){1,2}(?:\s*[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?(?![a-z])|noon|midnight)",
    re.IGNORECASE,
)
_ISO_DATE = re.compile(
    r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?\s*$"
)

Date = tuple  # (year or None, month, day)
Time = tuple  # (hour, minute)


@lru_cache(maxsize=4096)
def _parse_dates(candidate: str) -> tuple[Date, ...]:
    """The dates a date-like phrase can mean (two for an ambiguous ``04/05/2024``)."""
    from datetime import datetime

    from dateutil import parser

    iso = _ISO_DATE.match(candidate)
    if iso:
        return ((int(iso.group(1)), int(iso.group(2)), int(iso.group(3))),)
    text = re.sub(r"\bof\b", " ", candidate, flags=re.IGNORECASE)
    out = []
    for dayfirst in (False, True):
        try:
            a = parser.parse(text, default=datetime(1904, 1, 1), dayfirst=dayfirst)
            b = parser.parse(text, default=datetime(1908, 2, 2), dayfirst=dayfirst)
        except (ValueError, OverflowError):
            continue
        if a.day != b.day or a.month != b.month:  # no day or month written
            continue
        date = (a.year if a.year == b.year else None, a.month, a.day)
        if date not in out:
            out.append(date)
    return tuple(out)


@lru_cache(maxsize=4096)
def _parse_time(candidate: str) -> Time | None:
    low = candidate.strip().lower()
    if low == "noon":
        return (12, 0)
    if low == "midnight":
        return (0, 0)
    from dateutil import parser

    try:
        moment = parser.parse(low.replace(".", ""))
    except (ValueError, OverflowError):
        return None
    return (moment.hour, moment.minute)


def dates_in(text: str) -> set[Date]:
    """Every date written in ``text``."""
    found: set[Date] = set()
    for match in _DATE_CANDIDATE.finditer(text):
        found.update(_parse_dates(match.group(0)))
    return found


def times_in(text: str) -> set[Time]:
    """Every clock time written in ``text`` (``7pm``, ``19:00``, ``7:30 a.m.``, ``noon``)."""
    found = set()
    for match in _TIME_CANDIDATE.finditer(text):
        time = _parse_time(match.group(0))
        if time is not None:
            found.add(time)
    return found


def as_date_time(value: str) -> tuple[tuple[Date, ...], Time | None] | None:
    """``(possible dates, time or None)`` when ``value`` is only a date, a time, or an ISO
    date-time; else None."""
    text = value.strip()
    iso = _ISO_DATE.match(text)
    if iso:
        date = (int(iso.group(1)), int(iso.group(2)), int(iso.group(3)))
        time = (int(iso.group(4)), int(iso.group(5))) if iso.group(4) else None
        return (date,), time
    match = _DATE_CANDIDATE.fullmatch(text)
    if match:
        dates = _parse_dates(text)
        return (dates, None) if dates else None
    match = _TIME_CANDIDATE.fullmatch(text)
    if match:
        time = _parse_time(text)
        return ((), time) if time is not None else None
    return None


# -- evidence -----------------------------------------------------------------------------------


class Evidence:
    """An index of the texts a value may come from (user turns, tool results).

    JSON texts are read as their leaf values (keys are not evidence). ``add`` extends the index,
    so a conversation is indexed once, message by message.
    """

    def __init__(self, texts: Any = ()) -> None:
        self.numbers: set[float] = set()
        self.word_set: set[str] = set()
        self._joined = ""  # " w1 w2 ... " per text piece, one piece a line
        self._raw: list[str] = []
        self._dates: set[Date] = set()
        self._times: set[Time] = set()
        self._dated = 0  # how many of _raw the date and time sets have read
        self._plain: set[str] = set()  # words as written (lower case, not folded), for units
        self._plained = 0
        for text in texts:
            self.add(text)

    def add(self, text: Any) -> set[float]:
        """Index ``text`` (a string, JSON text or parsed value); returns the keys of the numbers
        it holds."""
        pieces = [leaf for _, leaf in value_leaves(text)]
        added: set[float] = set()
        for piece in pieces:
            if is_number(piece):
                added.add(number_key(piece))
                continue
            if not isinstance(piece, str) or not piece.strip():
                continue
            self._raw.append(piece)
            added.update(number_key(n) for n in (*numbers_in(piece), *base_unit_values(piece)))
            folded = words(piece)
            self.word_set.update(folded)
            self._joined += "\n " + " ".join(folded) + " "
        self.numbers |= added
        return added

    def has_phrase(self, folded_words: Sequence[str]) -> bool:
        """True when these (folded) words stand together, in order, in one text piece."""
        return bool(folded_words) and f" {' '.join(folded_words)} " in self._joined

    def has_number(self, value: float) -> bool:
        key = number_key(value)
        if key in self.numbers or number_key(abs(value)) in self.numbers:
            return True
        if float(value).is_integer() and 0 <= value <= 23 and key in self.hours:  # "until 11 PM" -> 23
            return True
        # "a"/"an" stand for one ("book a table" -> 1 table)
        return key == 1.0 and bool(self.word_set & {"a", "an", "single"})

    @property
    def dates(self) -> set[Date]:
        self._read_dates()
        return self._dates

    @property
    def times(self) -> set[Time]:
        self._read_dates()
        return self._times

    def _read_dates(self) -> None:
        """Dates and times are read only when a value needs them, and each text only once."""
        for text in self._raw[self._dated:]:
            self._dates |= dates_in(text)
            self._times |= times_in(text)
        self._dated = len(self._raw)

    @property
    def hours(self) -> set[float]:
        """The hour of every clock time written (``11 PM`` -> 23), for a tool that takes an hour
        as a number."""
        return {number_key(hour) for hour, _minute in self.times}

    @property
    def plain_words(self) -> set[str]:
        """The lower-case words of every text as written (plurals kept: ``inches``), stopwords
        aside; read only when a value needs them."""
        for text in self._raw[self._plained:]:
            self._plain.update(w for w in plain_tokens(text) if w not in STOPWORDS and not w.isdigit())
        self._plained = len(self._raw)
        return self._plain

    def has_date(self, candidates: tuple[Date, ...]) -> bool:
        for year, month, day in candidates:
            for seen_year, seen_month, seen_day in self.dates:
                if (seen_month, seen_day) == (month, day) and (seen_year is None or year is None or seen_year == year):
                    return True
        return False
