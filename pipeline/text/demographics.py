"""Age, age group, sex, Fitzpatrick skin type and duration stated in a caption (regular
expressions, no model; each guarded by a cheap substring test, since most captions state none).

Ages: "45-year-old", "aged 45", "45 yo", "45 years of age", "in her forties", "6-month-old
infant" (0 years). Words such as "elderly" or "newborn" are not guessed into numbers; they give
an age group instead. Implausible ages (over 120) are ignored rather than reported. Durations
("for three weeks", "a 2-year history", "lasting more than 10 days") come out in days.
"""

from __future__ import annotations

import re

_NUM_AGE = [
    re.compile(r"\b(\d{1,3})\s*-?\s*(?:years?|yrs?|y)\s*-?\s*old\b", re.I),
    re.compile(r"\baged?\s+(\d{1,3})\b", re.I),
    re.compile(r"\b(\d{1,3})\s*(?:yo|y/o|y\.o\.)(?=\W|$)", re.I),
    re.compile(r"\b(\d{1,3})\s+years?\s+of\s+age\b", re.I),
    re.compile(r"\b(\d{1,3})\s+year\s+old\b", re.I),
]
_INFANT_AGE = re.compile(r"\b\d{1,2}\s*-?\s*(?:months?|weeks?|days?)\s*-?\s*old\b", re.I)
_DECADES = {"teens": 15, "twenties": 25, "thirties": 35, "forties": 45, "fifties": 55, "sixties": 65,
            "seventies": 75, "eighties": 85, "nineties": 95}
_DECADE = re.compile(r"\bin\s+(?:his|her|their)\s+(?:early\s+|mid\s+|late\s+)?(" + "|".join(_DECADES) + r")\b", re.I)

_MALE = re.compile(r"\b(?:male|man|men|boy|boys|gentleman|husband|father|son|he|his|him)\b", re.I)
_FEMALE = re.compile(r"\b(?:female|woman|women|girl|girls|lady|wife|mother|daughter|she|her|hers)\b", re.I)
_NOUN_MALE = re.compile(r"\b(?:male|man|boy|gentleman|husband|father|son)\b", re.I)
_NOUN_FEMALE = re.compile(r"\b(?:female|woman|girl|lady|wife|mother|daughter)\b", re.I)

_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5, "vi": 6}
_SKIN_TYPE = re.compile(
    r"\b(?:fitzpatrick\s+(?:skin\s+)?(?:type|phototype)|skin\s+(?:photo)?type|phototype|fst)\s*[-:]?\s*(vi|iv|v|i{1,3}|[1-6])\b"
    r"|\btype\s+(vi|iv|v|i{1,3}|[1-6])\s+skin\b", re.I)


_DIGIT = re.compile(r"\d")


def extract_age(text: str) -> int | None:
    """First stated age in whole years, or None."""
    if _DIGIT.search(text):
        for pattern in _NUM_AGE:
            m = pattern.search(text)
            if m:
                value = int(m.group(1))
                if 0 <= value <= 120:
                    return value
        if _INFANT_AGE.search(text):
            return 0
    low = text.lower()
    if "ties" in low or "teens" in low:
        m = _DECADE.search(text)
        if m:
            return _DECADES[m.group(1).lower()]
    return None


# Age groups, from a stated age or from words when no age is stated.
AGE_GROUPS = (("infant", 0, 1), ("child", 2, 12), ("adolescent", 13, 17), ("adult", 18, 64), ("elderly", 65, 200))
_GROUP_WORDS = [
    ("infant", re.compile(r"\b(?:newborns?|neonat\w*|infants?|infantile|babies|baby)\b", re.I)),
    ("child", re.compile(r"\b(?:child|children|toddlers?|kids?|paediatric|pediatric|boys?|girls?)\b", re.I)),
    ("adolescent", re.compile(r"\b(?:adolescents?|adolescence|teenagers?|teens?)\b", re.I)),
    ("elderly", re.compile(r"\b(?:elderly|older adults?|older (?:man|woman|patient|people)|geriatric|seniors?|aged patients?)\b",
                           re.I)),
]


def age_group(text: str, age: int | None) -> str | None:
    """infant / child / adolescent / adult / elderly: from the age when stated, else from words."""
    if age is not None:
        return next(name for name, lo, hi in AGE_GROUPS if lo <= age <= hi)
    for name, pattern in _GROUP_WORDS:
        if pattern.search(text):
            return name
    return None


_NUMBER_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
                 "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "several": 3, "few": 3}
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
_AMOUNT = r"(\d{1,3}(?:\.\d)?|" + "|".join(_NUMBER_WORDS) + r")"
_UNIT = r"(day|week|month|year)s?"
_DURATION = re.compile(
    r"\b(?:for|over|lasting|persist\w*|present|since|duration of|history of|past|last)\s+(?:the\s+)?"
    r"(?:about\s+|around\s+|approximately\s+|more\s+than\s+|over\s+|nearly\s+|almost\s+|a\s+few\s+)?"
    + _AMOUNT + r"\s*-?\s*" + _UNIT + r"\b"
    r"|\b" + _AMOUNT + r"\s*-?\s*" + _UNIT + r"\s+(?:history|duration)\b", re.I)


def extract_duration_days(text: str) -> int | None:
    """How long the condition has been present, in days ("for three weeks" -> 21), or None."""
    low = text.lower()
    if not any(u in low for u in _UNIT_DAYS):
        return None
    m = _DURATION.search(text)
    if not m:
        return None
    amount, unit = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    amount = amount.lower()
    value = float(amount) if amount[0].isdigit() else _NUMBER_WORDS[amount]
    return round(value * _UNIT_DAYS[unit.lower()])


def extract_sex(text: str) -> str | None:
    """male/female from person nouns first (pronouns only when no noun says it); None if both or neither."""
    for male, female in ((_NOUN_MALE, _NOUN_FEMALE), (_MALE, _FEMALE)):
        m, f = bool(male.search(text)), bool(female.search(text))
        if m != f:
            return "male" if m else "female"
        if m and f:
            return None
    return None


def extract_skin_type(text: str) -> int | None:
    low = text.lower()
    if "type" not in low and "fst" not in low:
        return None
    m = _SKIN_TYPE.search(text)
    if not m:
        return None
    raw = (m.group(1) or m.group(2)).lower()
    return int(raw) if raw.isdigit() else _ROMAN[raw]
