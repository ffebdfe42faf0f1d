"""Caption cleaning and filtering for the ingest stage: small named filters, one chain.

Why filters at ingest: a caption that is HTML, a copyright line, a transcript "um", an empty
string or a post about something other than skin is noise for a CLIP-style text tower, and
every later stage (annotate, truncate, shards) would otherwise carry it. Each rule is a
:class:`CaptionFilter` with a ``name`` (its key in ``params.yaml: ingest.filters``), its
parameters and a docstring saying why; cleaners rewrite the text, checks reject it with a
reason code from :mod:`pipeline.rejects`. :class:`CaptionFilterChain` applies them in a fixed,
documented order (README "Caption cleaning and filters"):

cleaners  html -> control_chars -> boilerplate -> disfluencies -> repeated_words
checks    null_markers (caption_missing) -> empty (caption_empty, always on)
          -> max_chars (caption_too_long) -> language (pairs.language; caption_not_english)
          -> min_words (caption_too_short) -> dermatology (caption_not_dermatology)

Cleaners are conservative on purpose: medical text must survive ("Fig. 2" inside a sentence,
"5 um" micrometres, "UV", "SCC vs BCC", numbers, "H&E"). A removal cleaner tidies the
punctuation it leaves behind only when it removed something, so an untouched caption is
returned exactly as written (whitespace aside). The two word-based checks use English
vocabularies, so they apply to captions in ``languages`` (or too short to tell, ``und``);
other captions are kept as written and flagged by their ``language`` (translation is out of
scope), or rejected with ``non_english: reject``.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pipeline.errors import ConfigError

ONTOLOGY_DIR = Path(__file__).resolve().parents[2] / "ontology"


# -- the document a filter sees ----------------------------------------------------------------

@dataclass
class Caption:
    """One caption going through the chain: its text so far and what is known about it."""

    text: str
    language: str | None = None       # set by the adapter (forum) or by the language filter
    removed_by: list[str] = field(default_factory=list)   # cleaners that changed the text


@dataclass(frozen=True)
class Rejection:
    """Why a caption is rejected: a reason code from pipeline/rejects.py and the specifics."""

    reason: str
    detail: str


@dataclass(frozen=True)
class FilterResult:
    """The chain's answer: the cleaned caption and its language, or a rejection."""

    caption: str
    language: str
    rejection: Rejection | None = None


class CaptionFilter:
    """A named rule. ``__call__`` may rewrite ``doc.text`` and returns a rejection or None."""

    name: str = ""

    def __call__(self, doc: Caption) -> Rejection | None:
        raise NotImplementedError

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({params})"


# -- tidying after a removal ---------------------------------------------------------------------

_SPACE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([,.;:!?)\]])")
_EMPTY_BRACKETS = re.compile(r"\(\s*[,;:.]?\s*\)|\[\s*[,;:.]?\s*\]")
_COMMA_BEFORE_STOP = re.compile(r"(?:\s*[,;:])+\s*(?=[.!?])")        # "papule, ." -> "papule."
_COMMA_AFTER_PUNCT = re.compile(r"([.!?,;:])(?:\s*[,;:])+")          # "psoriasis. , note" -> "psoriasis. note"
_DOUBLE_STOP = re.compile(r"\.\s+(?=\.)")                             # "plaque. ." -> "plaque." ("..." stays)
_LEADING_PUNCT = re.compile(r"^[\s,;:|\-\u2013\u2014]+|^\.+(?!\d)\s*")
_TRAILING_JUNK = re.compile(r"[\s,;:|\-\u2013\u2014]+$")


def tidy(text: str) -> str:
    """Punctuation left behind by a removal: "So, , here" -> "So, here", "( )" -> "", ", ." -> "."."""
    text = _EMPTY_BRACKETS.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    text = _COMMA_BEFORE_STOP.sub("", text)
    text = _COMMA_AFTER_PUNCT.sub(r"\1", text)
    text = _DOUBLE_STOP.sub("", text)
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _LEADING_PUNCT.sub("", text)
    text = _TRAILING_JUNK.sub("", text)
    return text


class _Remover(CaptionFilter):
    """A cleaner that deletes spans; it tidies and records itself only when it changed the text."""

    def _apply(self, text: str) -> str:
        raise NotImplementedError

    def __call__(self, doc: Caption) -> None:
        new = self._apply(doc.text)
        if new != doc.text:
            doc.text = tidy(new)
            doc.removed_by.append(self.name)


# -- cleaners ------------------------------------------------------------------------------------

_INLINE_TAGS = "a|abbr|b|big|cite|code|em|font|i|mark|q|s|small|span|strong|sub|sup|tt|u"
_BLOCK_TAGS = ("address|article|aside|blockquote|body|br|caption|dd|div|dl|dt|figcaption|figure|footer|h[1-6]|head|"
               "header|hr|html|img|label|li|link|meta|nav|ol|p|pre|section|table|tbody|td|th|thead|title|tr|ul")
_HTML_DROP = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
# Attributes must have a "=" (href="...", class=x): "a<b and c>d" is a comparison, not a tag.
# Each alternative scans at most to the next "<" or ">": linear time on hostile input.
_HTML_INLINE = re.compile(rf"</?(?:{_INLINE_TAGS})(?:\s[^<>=]*=[^<>]*|\s*/?)>", re.IGNORECASE)
_HTML_BLOCK = re.compile(rf"</?(?:{_BLOCK_TAGS})(?:\s[^<>=]*=[^<>]*|\s*/?)>", re.IGNORECASE)
_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});")


class HtmlCleaner(CaptionFilter):
    """HTML markup out, entities decoded: scraped captions carry ``<i>Tinea</i>``, ``<br/>``,
    ``&amp;`` and ``&nbsp;``, which a tokenizer would read as words.

    Only known HTML tag names are stripped, so "lesions <5 mm and >2 mm" or "a<b" stay; only
    entities with their closing ``;`` are decoded, so "H&E" and "AT&T" stay. Inline tags vanish
    (``der<b>m</b>`` -> ``derm``), block tags become a space.
    """

    name = "html"

    def __call__(self, doc: Caption) -> None:
        text = doc.text
        if "<" not in text and "&" not in text:
            return
        for _ in range(2):          # twice: "&lt;b&gt;" decodes to a tag, "&amp;amp;" to "&amp;"
            text = _HTML_DROP.sub(" ", text)
            text = _HTML_INLINE.sub("", text)
            text = _HTML_BLOCK.sub(" ", text)
            text = _ENTITY.sub(lambda m: html.unescape(m.group(0)), text)
        doc.text = text


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u00ad\u200b-\u200d\u2060\ufeff\ufffe]")
# Bidirectional embedding/override/isolate controls: invisible, they make a caption display in
# another order than it is stored ("Trojan Source"), so what a reviewer reads is not what is trained on.
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")


class ControlCharCleaner(CaptionFilter):
    """Control, zero-width, soft-hyphen and bidi-override characters out, Unicode NFC, whitespace collapsed.

    They come from PDFs and web pages, are invisible when a person reads the caption, and split
    or glue tokens for the text tower; bidi overrides (U+202A-U+202E, U+2066-U+2069) also make
    the caption display in another order than it is stored. NFC (not NFKC) so "µm", "²" and
    "×" keep their meaning.
    """

    name = "control_chars"

    def __call__(self, doc: Caption) -> None:
        text = doc.text
        if not text.isascii():
            text = _BIDI.sub("", unicodedata.normalize("NFC", text))
        doc.text = _SPACE.sub(" ", _CONTROL.sub(" ", text)).strip()


# The rest of a sentence: stops at ". " or the end, or before a closing bracket; "Dr.", "J." and
# bracketed asides such as "(AAD)" do not end it ("et al." and "Inc." do: the caption may go on).
_TAIL = (r"(?:\b(?:Drs?|Prof|Mr|Mrs|Ms|St|Jr|Sr|Univ|Dept|[A-Z])\.|\([^()]*\)|[^.()\[\]])*?"
         r"(?:\.(?=\s|$)|(?=[)\]])|$)")
# (substrings of the lower-cased caption, one of which must be present; pattern): most captions
# contain no trigger, so the cleaner costs one lower() and a few substring tests.
_BOILERPLATE: list[tuple[tuple[str, ...], re.Pattern]] = [(triggers, re.compile(pattern, re.IGNORECASE)) for triggers, pattern in (
    # A figure label that opens the caption: "Figure 3.", "Fig. 2a:", "FIGURE 1 -", "Supplementary Figure S2.".
    (("fig", "image", "photo", "plate"),
     r"^(?:supplementa(?:ry|l)\s+|suppl\.\s*)?(?:figure|fig\.?|figs\.?|image|photo|plate)\s*"
     r"(?:S?\d+[A-Za-z]?|[IVX]+)(?:\s*(?:[-\u2013,&]|and)\s*\d*[A-Za-z]?)*(?:\s*\(\s*[A-Za-z]\s*\))?"
     r"(?:\s*[.:|)\-\u2013\u2014]+\s*|\s+(?=[A-Z]))"),
    (("click", "tap"),
     r"\b(?:click|tap)\s+(?:here\s+|on\s+(?:the\s+)?(?:image|picture|photo)\s+|(?:the\s+)?(?:image|picture|photo)\s+)?"
     r"(?:to|for)\s+(?:enlarge|zoom|a\s+larger\s+(?:image|version|view)|view\s+(?:a\s+)?larger(?:\s+(?:image|version|picture))?|"
     r"larger\s+(?:image|version|view))\b[.!]?"),
    (("larger", "enlarge"),
     r"\b(?:view|see)\s+(?:a\s+)?larger\s+(?:image|version|picture)\b[.!]?|\benlarge\s+(?:image|picture|photo)\b[.!]?"),
    # Attribution: "Image courtesy of Dr. A. Smith.", "(Courtesy of J. Doe, MD)", "Reprinted with permission from".
    (("courtesy",), r"\(\s*(?:(?:image|photo|photograph|picture|figure)s?\s+)?courtesy\s+of\b[^()]*\)"),
    (("courtesy",), r"\b(?:(?:image|photo|photograph|picture|figure)s?\s+)?courtesy\s+of\b" + _TAIL),
    (("permission", "reprinted", "reproduced", "adapted"),
     r"\b(?:reprinted|reproduced|adapted)\s+(?:with\s+(?:kind\s+)?permission\s+)?from\b" + _TAIL
     + r"|\bwith\s+(?:kind\s+)?permission\s+(?:of|from)\b" + _TAIL),
    # Links: "https://...", "www....", "doi:10.1016/...", with a "Source:" or "Available at" lead.
    (("http", "www."),
     r"(?:\b(?:source|available\s+(?:at|from)|retrieved\s+from|see|via)\s*:?\s*)?"
     r"(?:\bhttps?://|\bwww\.)[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]"),
    (("doi",), r"\bdoi\s*:?\s*10\.\d{4,9}/[^\s<>\"']*[^\s<>\"'.,;:!?)\]}]"),
    # Copyright and licence lines: "© 2019 Elsevier Inc.", "Copyright (c) 2020 ...", "All rights reserved."
    (("\u00a9", "(c)", "copyright"),
     r"(?:\u00a9|\(c\)(?=\s*(?:19|20)\d\d)|\bcopyright\b(?:\s*(?:\u00a9|\(c\)))?)" + _TAIL
     + r"(?:\s*published\s+by\b" + _TAIL + ")?"),
    (("rights",), r"\ball\s+rights\s+reserved\b[.!]?"),
)]


class BoilerplateCleaner(_Remover):
    """Publishing furniture out: a leading figure label, "Click to enlarge", "Image courtesy of
    ...", "Reprinted with permission from ...", URLs and DOIs, copyright lines.

    It says nothing about the image, and the same strings repeat over thousands of captions, so
    a contrastive model would learn them instead of the skin. A figure label is removed only
    when it opens the caption: "as shown in Fig. 2" inside a sentence stays.
    """

    name = "boilerplate"

    def _apply(self, text: str) -> str:
        low = text.lower()
        for triggers, pattern in _BOILERPLATE:
            if any(t in low for t in triggers):
                text = pattern.sub(" ", text)
        return text


# "um" is a filler word, except after a number ("50 um" micrometres) and as "UM" (uveal melanoma);
# "mm" and "er"/"ER" are left alone (millimetres, emergency room, oestrogen receptor).
_DISFLUENCY = re.compile(r"(?<![\w\-\u00b5.])(?:(?<!\d )(?:[Uu]m+|UMM+)|[Uu]h+m*|[Ee]rm+|[Hh]m+|[Mm]hm+|[Mm]m-hmm|[Uu]h-huh)"
                         r"(?![\w\-])")


class DisfluencyCleaner(_Remover):
    """Transcript fillers out: "so, um, here we see, uh, a plaque" -> "so, here we see, a plaque".

    Video captions are speech transcripts; the fillers carry no information and take tokens from
    the 77 the text tower reads. Applied to every source, because none of these words is medical
    and the rule is conservative: whole words only, "um" after a number is micrometres
    ("50 um"), upper-case "UM" (uveal melanoma) and "UV" stay, "mm" and "er" are not touched.
    """

    name = "disfluencies"

    def _apply(self, text: str) -> str:
        return _DISFLUENCY.sub(" ", text) if _DISFLUENCY.search(text) else text


_REPEAT = re.compile(r"\b([^\W\d_]+)(?:\s+\1\b)+", re.IGNORECASE)
# Doubled words that are grammar or names, not stutter: "that that", "had had", "what it is is", beri beri.
GRAMMATICAL_DOUBLES = frozenset({"that", "had", "is", "beri", "bye", "ha", "so", "can", "yo", "pom", "tom", "mahi",
                                 "ylang", "tut", "tsk", "chop", "bora", "dum", "cous", "aye", "tse"})


class RepeatedWordCleaner(_Remover):
    """Stuttered words collapsed: "the the lesion" -> "the lesion", "on on the arm" -> "on the arm".

    Speech transcripts and OCR repeat words; the repeat is noise. Letters-only words (numbers such
    as "2 2" stay), case-insensitive, and not the doubles that are grammar or names ("that that",
    "had had", "what it is is", "beri beri").
    """

    name = "repeated_words"

    def _apply(self, text: str) -> str:
        def keep_one(m: re.Match) -> str:
            return m.group(0) if m.group(1).lower() in GRAMMATICAL_DOUBLES else m.group(1)

        return _REPEAT.sub(keep_one, text)


# -- checks --------------------------------------------------------------------------------------

NULL_MARKERS = frozenset({"nan", "none", "null", "nil", "n/a", "n.a.", "na", "-", "--", "---", "\u2013", "\u2014",
                          "?", "undefined", "no caption", "no description", "[deleted]", "[removed]"})


class NullMarkerCheck(CaptionFilter):
    """A caption that is only a null marker ("NaN", "None", "null", "N/A", "-", "[deleted]") is
    ``caption_missing``: a spreadsheet or forum export wrote "no value" as text."""

    name = "null_markers"

    def __call__(self, doc: Caption) -> Rejection | None:
        if len(doc.text) <= 20 and doc.text.strip().casefold() in NULL_MARKERS:
            return Rejection("caption_missing", f"caption is a null marker: {doc.text.strip()!r}")
        return None


class EmptyCheck(CaptionFilter):
    """Nothing left after cleaning is ``caption_empty`` (always on: a pair needs a caption)."""

    name = "empty"

    def __call__(self, doc: Caption) -> Rejection | None:
        if doc.text.strip():
            return None
        if doc.removed_by:
            return Rejection("caption_empty", f"caption is empty after removing {'/'.join(doc.removed_by)}")
        return Rejection("caption_empty", "caption is empty after cleaning")


class MaxCharsCheck(CaptionFilter):
    """More than ``max_chars`` characters is ``caption_too_long``: a whole article body or a
    scraped page pasted as a caption, not a description of one image."""

    name = "max_chars"

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def __call__(self, doc: Caption) -> Rejection | None:
        if len(doc.text) > self.max_chars:
            return Rejection("caption_too_long", f"{len(doc.text)} characters > ingest.filters.max_chars {self.max_chars}")
        return None


_WORD = re.compile(r"[^\W\d_]+")


class MinWordsCheck(CaptionFilter):
    """Fewer than ``min_words`` words is ``caption_too_short`` ("Front view.", "Close-up."),
    unless the caption names a condition or a clinical concept: "Impetigo", "Lichen planus." or
    "Flaccid bullae." is a textbook caption whose diagnosis or morphology is the information
    (Derm1M keeps such captions)."""

    name = "min_words"

    def __init__(self, min_words: int, vocabulary: DermVocabulary) -> None:
        self.min_words = min_words
        self._vocabulary = vocabulary

    def __call__(self, doc: Caption) -> Rejection | None:
        n = len(_WORD.findall(doc.text))
        if n >= self.min_words or self._vocabulary.find(doc.text, specific=True):
            return None
        return Rejection("caption_too_short",
                         f"{n} word(s) < ingest.filters.min_words {self.min_words} and no condition or concept named")


class DermatologyCheck(CaptionFilter):
    """No skin or dermatology word at all is ``caption_not_dermatology``: a forum post about a
    phone, a video frame over "thanks for watching", a figure of a chart.

    Deliberately lenient (it keeps anything that names a condition, concept, body site, symptom
    or a generic skin word), because a lost real caption costs more than a kept stray one.
    """

    name = "dermatology"

    def __init__(self, vocabulary: DermVocabulary) -> None:
        self._vocabulary = vocabulary

    def __call__(self, doc: Caption) -> Rejection | None:
        if self._vocabulary.find(doc.text):
            return None
        return Rejection("caption_not_dermatology", "no skin or dermatology word in the caption")


class LanguageFilter(CaptionFilter):
    """Sets the caption's language (ISO 639-1, or ``und``); with ``non_english: reject``, a
    caption in no language of ``languages`` is ``caption_not_english``.

    An adapter that knows the language (forum) sets it on the record and it is kept. Captions
    too short to tell (under 20 letters) are ``und`` and never rejected for their language.
    """

    name = "language"

    def __init__(self, languages: Iterable[str], reject: bool) -> None:
        self.languages = tuple(languages)
        self.reject = reject

    def __call__(self, doc: Caption) -> Rejection | None:
        if doc.language is None:
            doc.language = detect_language(doc.text)
        if self.reject and doc.language != "und" and doc.language not in self.languages:
            return Rejection("caption_not_english", f"language {doc.language} not in ingest.filters.languages "
                                                    f"{list(self.languages)}")
        return None


# -- language detection --------------------------------------------------------------------------

MIN_LETTERS = 20
# Function words frequent in English and not words of other common languages ("a", "in", "an",
# "of", "was", "also", "will", "over", "at", "to", "my", "he", "her", "by" are: German, Dutch,
# Spanish, Polish, Danish, ...).
ENGLISH_STOPWORDS = frozenset({
    "the", "and", "with", "this", "that", "for", "from", "are", "which", "were", "been", "has", "have", "these",
    "those", "its", "there", "their", "they", "it", "be", "not", "what", "when", "who", "his", "him", "she", "we",
    "you", "your", "our", "after", "before", "about", "into", "than", "then", "can", "could", "would", "should",
    "may", "might", "shows", "showing", "seen", "while", "where", "how"})


# English words that are words in other languages too ("in", "a", "on", "of"...): they count
# only together with dermatology words (rule 2 of detect_language).
SHARED_FUNCTION_WORDS = frozenset({"is", "as", "in", "a", "an", "on", "of", "or", "at", "by", "to", "he", "her", "my",
                                   "also", "over", "under", "will"})


def detect_language(text: str) -> str:
    """ISO 639-1 code of ``text``, or ``und`` when it has under 20 letters or is undetectable.

    Two cheap, deterministic rules first, which decide nearly every English caption in
    microseconds (the text must be ASCII letters, at most 2% others): (1) at least two and 12%
    English function words is ``en``; (2) function words and dermatology words together at
    least half the words is ``en`` ("Flaccid bullae on both forearms.", "Stevens-Johnson
    syndrome, erosions on the glans penis.", which ``langdetect`` calls Catalan or Swedish;
    Italian or German captions with Latin terms stay at 0-0.35). Otherwise ``langdetect``
    (ships its profiles, offline), seeded so the same text always gets the same answer.
    """
    words = _WORD.findall(text)
    letters = sum(map(len, words))
    if letters < MIN_LETTERS:
        return "und"
    if _mostly_ascii(text, letters):
        low = [w.lower() for w in words]
        strong = sum(1 for w in low if w in ENGLISH_STOPWORDS)
        if strong >= 2 and strong >= 0.12 * len(low):
            return "en"
        shared = sum(1 for w in low if w in SHARED_FUNCTION_WORDS)
        if strong + shared + dermatology_vocabulary().count_words(low) >= 0.5 * len(low):
            return "en"
    return _langdetect(text)


def _mostly_ascii(text: str, letters: int) -> bool:
    """At most 2% of the letters are non-ASCII ("café-au-lait", "Sézary" stay English-like)."""
    return text.isascii() or sum(1 for ch in text if ord(ch) > 127 and ch.isalpha()) <= 0.02 * letters


@cache
def _detector_factory() -> object:
    from langdetect import DetectorFactory, detector_factory

    DetectorFactory.seed = 0
    detector_factory.init_factory()
    factory = detector_factory._factory
    factory.seed = 0
    return factory


def _langdetect(text: str) -> str:
    from langdetect.lang_detect_exception import LangDetectException

    detector = _detector_factory().create()
    detector.append(text)
    try:
        code = detector.detect()
    except LangDetectException:
        return "und"
    return code.split("-")[0] if code != "unknown" else "und"   # zh-cn / zh-tw -> zh


# -- the dermatology vocabulary ------------------------------------------------------------------

# Words for skin in general, beyond the named conditions, concepts, sites and symptoms.
GENERIC_SKIN_WORDS = (
    "skin", "lesion", "rash", "eruption", "dermatology", "dermatologist", "dermatological", "dermatologic",
    "dermoscopy", "dermoscopic", "dermatoscopy", "dermatoscopic", "dermatoscope", "dermis", "epidermis", "dermal",
    "epidermal", "cutaneous", "subcutaneous", "mucocutaneous", "mole", "spot", "bump", "lump", "blister", "wart",
    "freckle", "birthmark", "pimple", "boil", "sore", "wound", "scar", "ulcer", "bruise", "burn", "sunburn", "itchy",
    "itch", "redness", "swelling", "discoloration", "discolouration", "pigmentation", "pigmented", "complexion",
    "biopsy", "histology", "histopathology", "histological", "histopathological", "h&e", "keratinocyte",
    "melanocyte", "follicle", "follicular", "sebaceous", "eccrine", "apocrine", "hair", "nail", "scalp", "mucosa",
    "mucosal", "digit", "border", "margin", "tumor", "tumour", "growth", "cyst", "nodule", "papule", "plaque", "macule", "patch", "pustule",
    "vesicle", "bulla", "scale", "scaly", "crust", "erythema", "erythematous", "topical", "cream", "ointment",
    "emollient", "moisturiser", "moisturizer", "sunscreen", "cryotherapy", "excision", "melanoma", "carcinoma",
    "dermatitis", "eczema", "psoriasis", "acne", "infection", "fungal", "lupus", "leprosy", "vitiligo", "alopecia",
)
# Word stems that only skin words start with (unseen inflections: "dermatopathology", "keratinised").
SKIN_STEMS = ("derm", "cutane", "subcutane", "kerat", "melan", "pigment", "prurit", "erythem", "papul", "pustul",
              "vesic", "follic", "sebac", "eczem", "psoria", "hyperpig", "hypopig", "depig", "onych", "trich",
              "alopec", "naev", "nevi", "nevus", "acanth", "spongio", "parakerat", "hyperkerat", "telangiect")


def _tokens(text: str) -> list[str]:
    return re.findall(r"[A-Za-z0-9\u00c0-\u024f]+(?:&[A-Za-z]+)?", text)


def _plurals(word: str) -> list[str]:
    """Plural spellings of a folded word, so captions match without a lemmatiser per caption."""
    forms = [word + "s", word + "es"]
    for suffix, repl in (("sis", "ses"), ("us", "i"), ("a", "ae"), ("um", "a"), ("y", "ies"), ("ix", "ices"),
                         ("ex", "ices"), ("ch", "ches"), ("sh", "shes"), ("x", "xes")):
        if word.endswith(suffix):
            forms.append(word[: -len(suffix)] + repl)
    return forms


class DermVocabulary:
    """Folded phrase sets for "does this caption say anything about skin?", built once.

    Terms are token tuples (lower case; abbreviations such as "BCC" case-sensitive), with plural
    spellings of the last word added at build time; a caption is one regex tokenisation and a
    set lookup per token and phrase length, stopping at the first hit. ``specific`` is the subset
    that names a condition (ontology names, synonyms, abbreviations, signs) or a clinical concept
    (concepts.yaml), without body sites, symptoms and generic words (for the short-caption rule).
    """

    def __init__(self, terms: Iterable[str], abbreviations: Iterable[str] = (), specific: Iterable[str] = (),
                 stems: tuple[str, ...] = ()) -> None:
        specific = list(specific)
        self.folded = self._index([*terms, *specific], fold=True)
        self.exact = self._index(abbreviations, fold=False)
        self.specific = self._index(specific, fold=True)
        self.stems = stems
        self.words = frozenset(t for phrase in self.folded for t in phrase if len(t) > 2 and t.isalpha()) - (
            ENGLISH_STOPWORDS | SHARED_FUNCTION_WORDS)
        # first token -> the phrase lengths that start with it: one dict lookup per caption token
        self._starts = {name: self._lengths(index) for name, index in
                        (("folded", self.folded), ("exact", self.exact), ("specific", self.specific))}

    @staticmethod
    def _index(terms: Iterable[str], fold: bool) -> frozenset[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        for term in terms:
            toks = tuple(t.lower() if fold else t for t in _tokens(term))
            if not toks:
                continue
            out.add(toks)
            if fold:
                out.update(toks[:-1] + (p,) for p in _plurals(toks[-1]))
        return frozenset(out)

    @staticmethod
    def _lengths(index: frozenset[tuple[str, ...]]) -> dict[str, tuple[int, ...]]:
        lengths: dict[str, set[int]] = {}
        for phrase in index:
            lengths.setdefault(phrase[0], set()).add(len(phrase))
        return {first: tuple(sorted(ns)) for first, ns in lengths.items()}

    def __len__(self) -> int:
        return len(self.folded) + len(self.exact)

    def count_words(self, words: list[str]) -> int:
        """How many of ``words`` (lower case) are words of vocabulary phrases (three letters or more,
        function words aside) or start with a skin stem: "rosea", "toxic", "necrolysis"."""
        return sum(1 for w in words if w in self.words or w.startswith(self.stems))

    def find(self, text: str, specific: bool = False) -> str | None:
        """The first vocabulary phrase in ``text`` (as written), or None; ``specific``: only
        condition and concept phrases (abbreviations such as "BCC" are condition names)."""
        toks = _tokens(text)
        low = [t.lower() for t in toks]
        folded = self.specific if specific else self.folded
        starts = self._starts["specific" if specific else "folded"]
        exact_starts = self._starts["exact"]
        for i, word in enumerate(low):
            if not specific and word.startswith(self.stems):
                return toks[i]
            for n in starts.get(word, ()):
                if tuple(low[i:i + n]) in folded:
                    return " ".join(toks[i:i + n])
            for n in exact_starts.get(toks[i], ()):
                if tuple(toks[i:i + n]) in self.exact:
                    return " ".join(toks[i:i + n])
        return None


@cache
def dermatology_vocabulary() -> DermVocabulary:
    """The repository's own vocabularies: ontology/conditions.yaml (names, synonyms, abbreviations,
    signs), concepts.yaml, body_sites.yaml, symptoms.yaml, plus :data:`GENERIC_SKIN_WORDS`."""
    from pipeline.text.ontology import is_grouping_word, project_ontology
    from pipeline.text.vocab import load_body_sites, load_concepts, load_symptoms

    ontology = project_ontology()
    if ontology is None:
        raise ConfigError(f"{ONTOLOGY_DIR / 'conditions.yaml'} not found: the dermatology filter needs the "
                          "repository's ontology (or set ingest.filters.dermatology: false)")
    terms: list[str] = list(GENERIC_SKIN_WORDS)
    abbreviations: list[str] = []
    specific: list[str] = []
    for node_id, term, is_abbr in ontology.terms():
        if is_abbr:
            abbreviations.append(term)
        else:
            # "bacterial", "benign": grouping adjectives say skin, not which condition
            (terms if is_grouping_word(ontology, node_id, term) else specific).append(term)
    for node in ontology.walk():
        specific.extend(node.signs)
    specific.extend(p for entry in load_concepts(ONTOLOGY_DIR / "concepts.yaml") for p in entry.phrases)
    for entries in (load_body_sites(ONTOLOGY_DIR / "body_sites.yaml"), load_symptoms(ONTOLOGY_DIR / "symptoms.yaml")):
        for entry in entries:
            terms.extend(entry.phrases)
            if entry.negated_name:
                terms.append(entry.negated_name)
    return DermVocabulary(terms, abbreviations, specific, stems=SKIN_STEMS)


# -- the chain -----------------------------------------------------------------------------------

#: ``ingest.filters`` keys, their types and defaults (params.yaml documents each); a key missing
#: from the section takes its default.
DEFAULTS: dict[str, object] = {
    "html": True, "control_chars": True, "boilerplate": True, "disfluencies": True, "repeated_words": True,
    "null_markers": True, "max_chars": 20000, "language": True, "languages": ["en"], "non_english": "keep",
    "min_words": 3, "dermatology": True,
}
#: Without an ``ingest.filters`` section at all (params written before the filters existed):
#: cleanup, null markers, empty captions and the language column only, as ingest did before.
CLEANUP_ONLY: dict[str, object] = {"boilerplate": False, "disfluencies": False, "repeated_words": False,
                                   "max_chars": 0, "min_words": 0, "dermatology": False}


def check_params(cfg: dict | None, source: str = "params.yaml") -> dict:
    """``ingest.filters`` with defaults filled in; unknown keys and wrong types are one-line errors."""
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{source}: ingest.filters must be a mapping of filter names to settings")
    unknown = sorted(set(cfg) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) ingest.filters.{unknown[0]} {unknown}; valid: {sorted(DEFAULTS)}")
    out = {**DEFAULTS, **cfg}
    for key, default in DEFAULTS.items():
        value = out[key]
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: ingest.filters.{key} must be true or false, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"{source}: ingest.filters.{key} must be a whole number >= 0 (0: off), got {value!r}")
    if out["non_english"] not in ("keep", "reject"):
        raise ConfigError(f"{source}: ingest.filters.non_english must be keep or reject, got {out['non_english']!r}")
    if not isinstance(out["languages"], list) or not all(isinstance(x, str) and x for x in out["languages"]):
        raise ConfigError(f"{source}: ingest.filters.languages must be a list of ISO 639-1 codes, e.g. [en]")
    return out


class CaptionFilterChain:
    """The filters in order; call it on a caption to get the cleaned text and language or a rejection."""

    def __init__(self, cleaners: list[CaptionFilter], checks: list[CaptionFilter],
                 word_checks: list[CaptionFilter], languages: Iterable[str] = ("en",)) -> None:
        self.cleaners = cleaners
        self.checks = checks              # every caption
        self.word_checks = word_checks    # English-vocabulary checks: captions in ``languages`` or und
        self.languages = frozenset(languages) | {"und"}

    @classmethod
    def from_params(cls, cfg: dict | None) -> CaptionFilterChain:
        """The chain ``params.yaml: ingest.filters`` asks for (a missing key takes its default;
        no section at all, ``None``, is :data:`CLEANUP_ONLY`)."""
        p = check_params(CLEANUP_ONLY if cfg is None else cfg)
        cleaners: list[CaptionFilter] = [f for key, f in (
            ("html", HtmlCleaner()), ("control_chars", ControlCharCleaner()), ("boilerplate", BoilerplateCleaner()),
            ("disfluencies", DisfluencyCleaner()), ("repeated_words", RepeatedWordCleaner())) if p[key]]
        checks: list[CaptionFilter] = [NullMarkerCheck()] if p["null_markers"] else []
        checks.append(EmptyCheck())
        if p["max_chars"]:
            checks.append(MaxCharsCheck(p["max_chars"]))
        if p["language"] or p["non_english"] == "reject":
            checks.append(LanguageFilter(p["languages"], reject=p["non_english"] == "reject"))
        word_checks: list[CaptionFilter] = []
        if p["min_words"]:
            word_checks.append(MinWordsCheck(p["min_words"], dermatology_vocabulary()))
        if p["dermatology"]:
            word_checks.append(DermatologyCheck(dermatology_vocabulary()))
        return cls(cleaners, checks, word_checks, p["languages"])

    @property
    def filters(self) -> list[CaptionFilter]:
        return [*self.cleaners, *self.checks, *self.word_checks]

    def clean(self, text: str | None) -> str:
        """The cleaners alone (for a record's context: cleaned, never rejected)."""
        doc = Caption("" if text is None else str(text))
        for f in self.cleaners:
            f(doc)
        return _SPACE.sub(" ", doc.text).strip()

    def __call__(self, text: str | None, language: str | None = None) -> FilterResult:
        """Clean and check one caption; ``language`` is the adapter's, when it knows it."""
        if text is None:
            return FilterResult("", language or "und", Rejection("caption_missing", "the record has no caption"))
        doc = Caption(str(text), language.strip().lower() if language else None)
        for f in self.cleaners:
            f(doc)
        doc.text = _SPACE.sub(" ", doc.text).strip()
        for f in self.checks:
            rejection = f(doc)
            if rejection:
                return FilterResult(doc.text, doc.language or "und", rejection)
        if doc.language is None or doc.language in self.languages:
            for f in self.word_checks:
                rejection = f(doc)
                if rejection:
                    return FilterResult(doc.text, doc.language or "und", rejection)
        return FilterResult(doc.text, doc.language or "und")
