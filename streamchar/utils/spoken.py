"""The one text normaliser: what a person types becomes the words a voice speaks.

Numbers, ordinals, years, times, dates, money, percentages, units, common abbreviations, symbols
and unicode punctuation become English words (number words from `num2words`), and characters no
voice speaks are dropped, so the spoken form holds only letters, spaces and . , ; : ! ? ' " ( ) -.
Data synthesis speaks this form, the model reads it, and WER compares it on both sides; the
typed text stays what a viewer sees: every spoken word keeps the span of the typed token it came
from (`Spoken.sources`), so a page can light up "3" while "three" is heard.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from num2words import num2words

from streamchar.utils.text import word_matches

MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december")
_MONTH_ABBREVIATIONS = {m[:3]: m for m in MONTHS} | {"sept": "september"}
# a word, then a full stop, read as these words (a stop that also ends the sentence is kept)
ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miz", "dr": "doctor", "prof": "professor", "st": "saint", "jr": "junior",
    "sr": "senior", "vs": "versus", "etc": "et cetera", "approx": "approximately", "dept": "department", "ave": "avenue",
    "blvd": "boulevard", "mt": "mount", "no": "number", "inc": "incorporated", "ltd": "limited", "co": "company",
    "e.g": "for example", "i.e": "that is", "a.m": "a m", "p.m": "p m",
}  # fmt: skip
# after a number only
UNITS = {
    "km": ("kilometer", "kilometers"), "kg": ("kilogram", "kilograms"), "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"), "m": ("meter", "meters"), "g": ("gram", "grams"), "mg": ("milligram", "milligrams"),
    "lb": ("pound", "pounds"), "lbs": ("pounds", "pounds"), "oz": ("ounce", "ounces"), "ft": ("foot", "feet"),
    "mi": ("mile", "miles"), "mph": ("mile per hour", "miles per hour"), "kph": ("kilometer per hour", "kilometers per hour"),
    "km/h": ("kilometer per hour", "kilometers per hour"), "l": ("liter", "liters"), "ml": ("milliliter", "milliliters"),
    "h": ("hour", "hours"), "hr": ("hour", "hours"), "hrs": ("hours", "hours"), "min": ("minute", "minutes"),
    "mins": ("minutes", "minutes"), "s": ("second", "seconds"), "sec": ("second", "seconds"), "secs": ("seconds", "seconds"),
    "kb": ("kilobyte", "kilobytes"), "mb": ("megabyte", "megabytes"), "gb": ("gigabyte", "gigabytes"), "tb": ("terabyte", "terabytes"),
    "°": ("degree", "degrees"), "°c": ("degree celsius", "degrees celsius"), "°f": ("degree fahrenheit", "degrees fahrenheit"),
    "%": ("percent", "percent"), "x": ("times", "times"), "k": ("thousand", "thousand"),
}  # fmt: skip
CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
              "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "sen", "sen")}  # fmt: skip
SCALES = {"thousand", "million", "billion", "trillion"}
SYMBOLS = {"&": "and", "+": "plus", "=": "equals", "@": "at", "#": "number", "×": "times", "°": "degrees", "%": "percent"}
# spelled letter by letter when typed in capitals (the rest of the capitals are read as words)
INITIALISMS = {"usa", "uk", "us", "eu", "un", "tv", "ai", "fbi", "cia", "ceo", "bbc", "pc", "pdf", "faq", "dj", "id", "gps", "atm", "diy", "vip",
               "nba", "nfl", "dvd", "cd", "html", "url", "usb", "sms", "bmw", "phd", "mba", "ok", "md", "dc", "nyc", "jfk"}  # fmt: skip
# Roman numerals after a capitalised word: "Henry IV" is "Henry the fourth"; after these, a number ("World War two")
ROMAN_COUNTED = {"war", "chapter", "part", "act", "scene", "phase", "type", "volume", "level", "stage", "class", "article", "section",
                 "psalm", "apollo", "book", "round", "step", "grade", "series", "mark"}  # fmt: skip
_ROMAN = re.compile(r"(?=[XVI])X{0,3}(I[XV]|V?I{0,3})")  # II to XXXIX: "MD" and "CD" stay letters
_ROMAN_VALUES = {"X": 10, "V": 5, "I": 1}
_PUNCTUATION = {"\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
                "\u2033": '"', "\u00ab": '"', "\u00bb": '"', "\u2013": " - ", "\u2014": " - ", "\u2015": " - ", "\u2212": "-",
                "\u2026": "...", "\u00a0": " ", "\u2009": " ", "\u202f": " ", "`": "'", "\u00b4": "'"}  # fmt: skip
SPOKEN_PUNCTUATION = set(".,;:!?'\"()-")

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?|\.\d+"
_TOKEN = re.compile(
    rf"(?P<money>[$£€¥]\s?(?:{_NUMBER})(?:\s?(?:thousand|million|billion|trillion|[kmb]n?)\b)?)"
    r"|(?P<date>\d{4}-\d{1,2}-\d{1,2}\b|\d{1,2}/\d{1,2}/\d{2,4}\b)"
    r"|(?P<time>\d{1,2}(?::\d{2}(?:\s?(?:[ap]\.m\.|[ap]m\b))?|\s?(?:[ap]\.m\.|[ap]m\b)))"
    r"|(?P<phone>\d{3}-\d{3}-\d{4}\b|\d{3}-\d{4}\b)"
    r"|(?P<decade>'?(?:\d{2})?\d0'?s\b)"
    r"|(?P<ordinal>\d+(?:st|nd|rd|th)\b)"
    r"|(?P<fraction>\d+/\d+\b)"
    rf"|(?P<number>(?:(?<![\w.])-)?(?:{_NUMBER}))"
    r"(?P<unit>\s?(?:°[cf]\b|°|%|(?:km/h|mph|kph|km|kg|cm|mm|mg|ml|lbs|lb|oz|ft|mi|hrs|hr|mins|min|secs|sec|kb|mb|gb|tb)\b)|[mglhsxk]\b)?"
    r"|(?P<abbreviation>(?:e\.g|i\.e|a\.m|p\.m)\.?|(?:mr|mrs|ms|dr|prof|st|jr|sr|vs|etc|approx|dept|ave|blvd|mt|inc|ltd|co)\.|no\.(?=\s?\d))"
    r"|(?P<word>[a-z]+(?:'[a-z]+)*)"
    r"|(?P<symbol>[&+=@#×°%])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Spoken:
    """A typed text and its spoken form; `sources[k]` is the (start, end) in `typed` of the token
    spoken word k came from (words as `utils.text.word_matches` counts them in `text`)."""

    typed: str
    text: str
    sources: tuple[tuple[int, int], ...]

    def typed_words(self) -> list[str]:
        """The typed token behind each spoken word."""
        return [self.typed[a:b] for a, b in self.sources]

    def shown_words(self) -> list[str]:
        """What a page shows for each spoken word: its typed token at the token's first spoken
        word, "" at the others ("$3" is shown once, lit while "three" and "dollars" are heard)."""
        return ["" if k and span == self.sources[k - 1] else self.typed[span[0] : span[1]] for k, span in enumerate(self.sources)]


def _words(n: float | int, kind: str = "cardinal") -> str:
    """num2words' English, its hyphens and commas turned into spaces; a number past the largest it
    reads (from a thousand centillion, 10^306, up) digit by digit."""
    try:
        said = num2words(n, to=kind, lang="en")
    except OverflowError:
        said = " ".join(num2words(int(d), lang="en") for d in str(n) if d.isdigit())
    return " ".join(said.replace("-", " ").replace(",", " ").split())


def _number_value(digits: str) -> int | float:
    clean = digits.replace(",", "")
    return float(clean) if "." in clean else int(clean)


def number_words(digits: str) -> str:
    """A typed number read aloud: integers whole, decimals digit by digit after "point"."""
    clean = digits.replace(",", "")
    sign = "minus " if clean.startswith("-") else ""
    clean = clean.lstrip("-")
    whole, _, frac = clean.partition(".")
    said = _words(int(whole or "0")) if whole or not frac else ""
    if frac:
        said = f"{said + ' ' if said else ''}point {' '.join(_words(int(d)) for d in frac)}"
    return sign + said


def year_words(value: int) -> str:
    return _words(value, "year")


def _money(token: str) -> str:
    symbol, amount = token[0], token[1:].strip()
    scale = re.search(r"(thousand|million|billion|trillion|[kmb]n?)$", amount, re.IGNORECASE)
    one, many, sub_one, sub_many = CURRENCIES[symbol]
    if scale:
        amount = amount[: scale.start()].strip()
        word = {"k": "thousand", "m": "million", "b": "billion", "bn": "billion", "mn": "million"}.get(scale.group(1).lower(), scale.group(1).lower())
        return f"{number_words(amount)} {word} {many}"
    whole, _, cents = amount.replace(",", "").partition(".")
    units = int(whole or "0")
    said = f"{_words(units)} {one if units == 1 else many}" if units or not cents else ""
    if cents:
        c = int((cents + "0")[:2])
        if c:
            said = f"{said} and " if said else ""
            said += f"{_words(c)} {sub_one if c == 1 else sub_many}"
    return said


def _time(token: str) -> str:
    m = re.match(r"(\d{1,2})(?::(\d{2}))?\s?([ap])?", token, re.IGNORECASE)
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if hour > 24 or minute > 59:
        return " ".join(number_words(p) for p in re.findall(r"\d+", token))
    said = _words(hour)
    if minute:
        said += f" oh {_words(minute)}" if minute < 10 else f" {_words(minute)}"
    elif not half:
        said += " o'clock"
    return f"{said} {half.lower()} m" if half else said


def _date(token: str) -> str:
    parts = [int(p) for p in re.findall(r"\d+", token)]
    if "-" in token:
        year, month, day = parts
    else:
        month, day, year = parts
        year += 2000 if year < 100 else 0
    if not (1 <= month <= 12 and 1 <= day <= 31):
        return " ".join(number_words(str(p)) for p in parts)
    return f"{MONTHS[month - 1].capitalize()} {_words(day, 'ordinal')} {year_words(year)}"


def _number(token: str, unit: str, before: str, after: str) -> str:
    value = _number_value(token.lstrip("-"))
    unit_key = unit.strip().lower()
    if unit_key:
        one, many = UNITS[unit_key]
        return f"{number_words(token)} {one if value == 1 and not token.startswith('-') else many}"
    follows_month = before.lower().rstrip(".") in MONTHS or before.lower().rstrip(".") in _MONTH_ABBREVIATIONS
    if isinstance(value, int) and "," not in token and not token.startswith("-"):
        if follows_month and 1 <= value <= 31:
            return _words(value, "ordinal")
        if after.lower().rstrip(".") in MONTHS and 1 <= value <= 31:
            return "the " + _words(value, "ordinal") + " of"
        if len(token) == 4 and 1100 <= value <= 2099:
            return year_words(value)
    return number_words(token)


def _spelled(word: str) -> str:
    return " ".join(word.lower())


def _decade(token: str) -> str:
    digits = token.strip("'s")
    said = year_words(int(digits)) if len(digits) == 4 else _words(int(digits))
    return said[:-1] + "ies" if said.endswith("y") else said + "s"


def _fraction(token: str) -> str:
    top, bottom = (int(p) for p in token.split("/"))
    if bottom in (2, 4) and top < bottom:
        return f"{_words(top)} {'half' if bottom == 2 else 'quarter' if top == 1 else 'quarters'}"
    return f"{_words(top)} over {_words(bottom)}"


def _abbreviation(token: str) -> str:
    said = ABBREVIATIONS[token.lower().rstrip(".")]
    return said[0].upper() + said[1:] if token[0].isupper() else said


# the token kinds read aloud from the token alone
_READERS: dict[str, Callable[[str], str]] = {
    "money": lambda t: _money(t), "date": lambda t: _date(t), "time": lambda t: _time(t),
    "phone": lambda t: " ".join(_words(int(d)) for d in t if d.isdigit()), "decade": _decade,
    "ordinal": lambda t: _words(int(t[:-2]), "ordinal"), "fraction": _fraction, "abbreviation": _abbreviation,
    "symbol": lambda t: SYMBOLS[t],
}  # fmt: skip


def _token_words(match: re.Match[str], before: str, after: str) -> str:
    kind, token = match.lastgroup, match.group()
    if kind == "unit" or match.group("number") is not None:
        return _number(match.group("number"), match.group("unit") or "", before, after)
    if kind in _READERS:
        return _READERS[kind](token)
    low = token.lower()
    roman = _roman(token, before)
    if roman:
        return roman
    if token.isupper() and low in INITIALISMS:
        return "okay" if low == "ok" else _spelled(token)
    if low in _MONTH_ABBREVIATIONS and after[:1].isdigit():
        return _MONTH_ABBREVIATIONS[low].capitalize()
    return token


def _roman(token: str, before: str) -> str | None:
    """A Roman numeral of two letters or more after a capitalised word, read aloud."""
    if len(token) < 2 or not before[:1].isupper() or not _ROMAN.fullmatch(token):
        return None
    values = [_ROMAN_VALUES[c] for c in token]
    value = sum(-v if i + 1 < len(values) and v < values[i + 1] else v for i, v in enumerate(values))
    return _words(value) if before.lower() in ROMAN_COUNTED else "the " + _words(value, "ordinal")


def fold_unicode(text: str) -> str:
    """Typographic punctuation to its plain form, accents dropped (café -> cafe), width folded."""
    text = "".join(_PUNCTUATION.get(c, c) for c in unicodedata.normalize("NFKC", text))
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _ends_sentence(match: re.Match[str], text: str) -> bool:
    """Whether an abbreviation's or a time's full stop ("etc.", "5 p.m.") also ends a sentence:
    at the end of the text, or (not after a title such as "Dr.") before a capital."""
    token = match.group()
    if not token.endswith(".") or match.lastgroup not in ("abbreviation", "time"):
        return False
    rest = text[match.end() :].lstrip()
    title = token.lower().rstrip(".") in ("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "no", "mt", "vs")
    return not rest or (rest[0].isupper() and not title)


@lru_cache(maxsize=1024)
def _fold_character(c: str) -> str:
    return fold_unicode(c)


def _gap(text: str) -> str:
    """What is kept between two tokens: spoken punctuation, with a space after a stop or comma
    ("myth...But" -> "myth... But", which no engine reads as "dot"); anything else is a space."""
    kept = "".join(c if c in SPOKEN_PUNCTUATION else " " for c in text)
    if not kept.strip():
        return " " if text else ""
    return kept + " " if kept[-1] in ".,;:!?" else kept


@lru_cache(maxsize=4096)
def to_spoken(typed: str) -> Spoken:
    """`typed` (whitespace folded) with its spoken form and each spoken word's typed source."""
    typed = " ".join(typed.split())
    # folded character by character, so that each folded character knows its typed one (… -> ...)
    folds = list(typed) if typed.isascii() and "`" not in typed else [_fold_character(c) for c in typed]
    folded = "".join(folds)
    index = [i for i, f in enumerate(folds) for _ in f] or [0]
    pieces: list[str] = []
    sources: list[tuple[int, int]] = []
    matches = list(_TOKEN.finditer(folded))
    end = 0
    for i, m in enumerate(matches):
        gap = _gap(folded[end : m.start()])
        stop = "." if _ends_sentence(m, folded) else ""
        before = matches[i - 1].group() if i and not folded[matches[i - 1].end() : m.start()].strip() else ""
        following = _TOKEN.match(folded[m.end() :].lstrip())
        after = following.group() if following else ""
        said = _token_words(m, before, after)
        if pieces and not gap and pieces[-1][-1:].isalpha():
            gap = " "
        pieces.append(gap + said + stop)
        span = (index[m.start()], index[m.end() - 1] + 1)
        sources += [span] * len(word_matches(said))
        end = m.end()
    tail = "".join(c for c in folded[end:] if c in SPOKEN_PUNCTUATION or c.isspace())
    text = " ".join(("".join(pieces) + tail).split())
    return Spoken(typed, text, tuple(sources))


def spoken_text(typed: str) -> str:
    return to_spoken(typed).text
