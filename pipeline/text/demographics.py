"""Age, sex and Fitzpatrick skin type stated in a caption (regular expressions, no model).

Ages: "45-year-old", "aged 45", "45 yo", "45 years of age", "in her forties", "6-month-old
infant" (0 years), "elderly"/"newborn" words are not guessed into numbers. Implausible ages
(over 120) are ignored rather than reported.
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


def extract_age(text: str) -> int | None:
    """First stated age in whole years, or None."""
    for pattern in _NUM_AGE:
        m = pattern.search(text)
        if m:
            value = int(m.group(1))
            if 0 <= value <= 120:
                return value
    if _INFANT_AGE.search(text):
        return 0
    m = _DECADE.search(text)
    if m:
        return _DECADES[m.group(1).lower()]
    return None


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
    m = _SKIN_TYPE.search(text)
    if not m:
        return None
    raw = (m.group(1) or m.group(2)).lower()
    return int(raw) if raw.isdigit() else _ROMAN[raw]
