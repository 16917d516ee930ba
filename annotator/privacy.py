"""Scrub personal data from text before anything is stored or sent.

Each kind of personal data is replaced by a typed placeholder (`PLACEHOLDERS`): email addresses,
phone numbers, URLs, IPv4 and IPv6 addresses, payment card numbers, US social security numbers
and IBANs. Placeholders hold nothing any pattern looks for, and `scrub_text` repeats its
passes until one finds nothing, so scrubbing is idempotent.

Why these libraries:
- `phonenumbers` (Google's libphonenumber, kept in step with the world's numbering plans) decides
  whether a digit run is a real phone number, grouped the way its country writes it; a regex
  alone would scrub dates, order numbers and measurements.
- `python-stdnum` supplies the checks: Luhn for cards, mod-97 plus each country's IBAN length
  and layout, the never-issued SSN ranges. `ipaddress` (stdlib) validates IP addresses.
- Not Microsoft presidio: its recognisers need a spaCy language model, a download this project
  cannot make at install or run time, and an NLP pipeline far too slow for bulk ingest.
- Not scrubadub: unmaintained since 2023, and its better detectors need the same models.

Speed: ingest scrubs every turn, so ordinary English must cost next to nothing.
- Single-character membership tests (memchr in C) rule families out: no '@', no email; no
  digit, nothing numeric; no ':', no IPv6.
- Text with digits is translated once to a byte "shape" (digits to 0, capitals to A) in which
  substring tests find the hints of each numeric family: 9+ digits in a run (cards, SSNs,
  phones), a dotted quad (IPv4), two capitals and two digits (IBAN). Dates, times, versions,
  prices and counts give no hint, so their text costs that translation and nothing else.
- Every pattern starts with a character class or a literal, never a lookbehind (those come
  after the first character), so `re` skips through the text in C instead of trying the whole
  pattern at each position. Emails and URLs are read outwards from their '@', '://' or 'www.'.
- Validators (checksums, `phonenumbers`) run on candidates only; phone results are cached.
Passes run most specific first: a URL may hold an IP or digits, an IBAN holds card-like groups,
and the phone matcher, last, would accept some of the others' digit runs.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

from phonenumbers import Leniency, PhoneNumberMatcher
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.us import ssn as _ssn

__all__ = [
    "DEFAULT_PHONE_REGION",
    "PII_TYPES",
    "PLACEHOLDERS",
    "scrub_text",
    "scrub_value",
]

PII_TYPES: Final[tuple[str, ...]] = ("EMAIL", "PHONE", "URL", "IP", "CARD", "SSN", "IBAN")
PLACEHOLDERS: Final[dict[str, str]] = {kind: f"[{kind}]" for kind in PII_TYPES}

# Numbers written without a country code are read as US numbers (the study's main locale).
DEFAULT_PHONE_REGION: Final[str] = "US"

# ---------------------------------------------------------------------------------------------
# Patterns. Digits are written [0-9], not \d, so other scripts' digits never reach the checks.

# Which numeric families have a hint, read from a byte copy of the text where every digit is
# "0" and every capital "A": bytes.translate and substring tests run in C at about a
# nanosecond a character, several times faster than a regex scan for a digit class.
_SHAPE: Final = bytes.maketrans(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"0" * 10 + b"A" * 26)
_NUMBER_SEPARATORS: Final = b" .()-"
_SHAPE_QUAD: Final = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")

# 13 to 19 digits, contiguous or in the groupings cards are printed with (4-4-4-4[-3],
# 4-6-5 Amex, 4-6-4 Diners); thousands groups of three never fit. A first digit of 2-6 covers
# the networks (Mastercard 2/5, Amex and Diners 3, Visa 4, Discover and UnionPay 6).
_CARD: Final = re.compile(
    r"[2-6](?<![\w.+\-][2-6])(?:"
    r"[0-9]{12,18}"
    r"|[0-9]{3}(?P<s>[ \-])[0-9]{4}(?P=s)[0-9]{4}(?P=s)[0-9]{1,4}(?:(?P=s)[0-9]{1,3})?"
    r"|[0-9]{3}(?P<t>[ \-])[0-9]{6}(?P=t)[0-9]{4,5}"
    r")(?![0-9])"
)

_SSN: Final = re.compile(r"[0-9](?<![\w.\-][0-9])[0-9]{2}-[0-9]{2}-[0-9]{4}(?!\w|-[0-9])")

# Compact (up to 34 characters) or printed in groups of four.
_IBAN: Final = re.compile(
    r"[A-Z](?<!\w[A-Z])[A-Z][0-9]{2}"
    r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?!\w)"
)

# Not part of a longer dotted sequence (1.2.3.4.5) or of a word (v1.2.3.4); octets checked by
# `ipaddress`.
_IPV4: Final = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\.?\w)")
_VERSION_BEFORE: Final = re.compile(r"(?i)\b(?:version|ver\.?|v|release|build|update) ?[:=]? ?\Z")

# Every IPv6 address has "::" or seven colons between groups of at most four hex digits, so
# three groups in a row; times (12:30:45) have two. Find that (a literal first character is
# fast), then read the whole candidate around it.
_IPV6_HINT: Final = re.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)")
_IPV6_BODY: Final = re.compile(r"[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.\-]+)?")
_HEX_OR_COLON: Final = frozenset("0123456789abcdefABCDEF:")

# Digits with the separators people put in phone numbers; no '/', ':' or ',' (dates, times,
# thousands). `phonenumbers` then finds the valid, properly grouped numbers inside. The length
# cap bounds the matcher's work (it grows faster than linearly); a number cut in two by it is
# found by the next round of `scrub_text`.
_PHONE_CANDIDATE: Final = re.compile(r"[+(0-9](?<![\w+.\-/][+(0-9])[0-9()\-. ]{4,46}[0-9]")
_DECIMAL: Final = re.compile(r"[0-9]+\.[0-9]+")
_NON_DIGIT: Final = re.compile(r"[^0-9]+")

# Emails and URLs are read outwards from their anchor.
_EMAIL_LOCAL: Final = re.compile(r"[\w.+\-]{1,64}\Z")  # searched backwards from the '@'
_EMAIL_DOMAIN: Final = re.compile(
    r"(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w\-])"
)
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}\Z")  # backwards from '://'
_URL_BODY: Final = re.compile(r"[^\s<>\"'`]*")
_URL_TRAILING: Final = ".,;:!?*_~'\""
_URL_CLOSERS: Final = {")": "(", "]": "[", "}": "{"}
_WORDISH: Final = frozenset(".+-_")  # with str.isalnum: characters that glue onto a token


def _glued(ch: str) -> bool:
    return ch.isalnum() or ch in _WORDISH


# ---------------------------------------------------------------------------------------------
# Splicing found spans into the text.


def _splice(text: str, spans: Iterable[tuple[int, int]], kind: str, counts: Counter[str]) -> str:
    """Replace the sorted, non-overlapping `spans` of `text` by the placeholder of `kind`."""
    parts: list[str] = []
    done = 0
    placeholder = PLACEHOLDERS[kind]
    for start, end in spans:
        parts.append(text[done:start])
        parts.append(placeholder)
        done = end
    if not parts:
        return text
    counts[kind] += len(parts) // 2
    parts.append(text[done:])
    return "".join(parts)


def _sub(pattern: re.Pattern[str], kind: str, length: Callable[[re.Match[str]], int],
         text: str, counts: Counter[str]) -> str:
    """Replace the first `length(match)` characters of each match of `pattern` (0: keep it)."""
    placeholder = PLACEHOLDERS[kind]

    def replace(m: re.Match[str]) -> str:
        found = m.group()
        n = length(m)
        if n <= 0:
            return found
        counts[kind] += 1
        return placeholder + found[n:]

    return pattern.sub(replace, text)


# ---------------------------------------------------------------------------------------------
# Emails and URLs.


def _url_end(text: str, body_start: int) -> int:
    """End of the URL whose body starts at `body_start`, without trailing punctuation and
    unbalanced closing brackets (a URL in parentheses or at the end of a sentence)."""
    body = _URL_BODY.match(text, body_start)
    assert body is not None  # the pattern accepts the empty string
    end = body.end()
    while end > body_start:
        ch = text[end - 1]
        if ch in _URL_TRAILING or ch in _URL_CLOSERS and (
            text.count(ch, body_start, end) > text.count(_URL_CLOSERS[ch], body_start, end)
        ):
            end -= 1
        else:
            break
    return end


def _find_urls(text: str) -> list[tuple[int, int]]:
    anchors: list[tuple[int, str]] = []
    for anchor in ("://", "www.", "WWW."):
        at = text.find(anchor)
        while at >= 0:
            anchors.append((at, anchor))
            at = text.find(anchor, at + len(anchor))
    anchors.sort()
    spans: list[tuple[int, int]] = []
    done = 0  # anchors inside a URL already found ("http://www.x") are part of it
    for at, anchor in anchors:
        if at < done:
            continue
        if anchor == "://":
            scheme = _URL_SCHEME.search(text, max(done, at - 16), at)
            if scheme is None:
                continue
            start, body_start = scheme.start(), at + 3
        else:
            start, body_start = at, at + 4
        if start > 0 and _glued(text[start - 1]):
            continue
        end = _url_end(text, body_start)
        if end > body_start:  # a host, not just "http://"
            spans.append((start, end))
            done = end
    return spans


def _find_emails(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    done = 0
    at = text.find("@")
    while at >= 0:
        local = _EMAIL_LOCAL.search(text, max(done, at - 64), at)
        domain = _EMAIL_DOMAIN.match(text, at + 1)
        if local and domain:
            start = local.start()
            if not (start > 0 and _glued(text[start - 1])):
                spans.append((start, domain.end()))
                done = domain.end()
        at = text.find("@", max(at + 1, done))
    return spans


# ---------------------------------------------------------------------------------------------
# Numeric families: each check returns how many leading characters of the candidate are PII.


def _card_length(m: re.Match[str]) -> int:
    candidate = m.group()
    spans = [candidate]
    cut = max(candidate.rfind(" "), candidate.rfind("-"))
    if cut > 0:  # "4111 1111 1111 1111 12/25": the 12 is an expiry month, not card digits
        spans.append(candidate[:cut])
    for span in spans:
        digits = _NON_DIGIT.sub("", span)
        if 13 <= len(digits) <= 19 and _luhn.is_valid(digits):
            return len(span)
    return 0


def _ssn_length(m: re.Match[str]) -> int:
    return len(m.group()) if _ssn.is_valid(m.group()) else 0


def _iban_length(m: re.Match[str]) -> int:
    span = m.group()
    while len(span) >= 15:
        if _iban.is_valid(span):
            return len(span)
        cut = span.rfind(" ")
        if cut < 0:
            break
        span = span[:cut]  # a capitalised word after the IBAN was read as one more group
    return 0


def _ipv4_length(m: re.Match[str]) -> int:
    if _VERSION_BEFORE.search(m.string, max(0, m.start() - 12), m.start()):
        return 0  # "version 2.4.1.0" is a four-part version number
    try:
        ipaddress.IPv4Address(m.group())  # octets 0-255, no leading zeros
    except ValueError:
        return 0
    return len(m.group())


def _is_ipv6(candidate: str) -> bool:
    # "::" and "::1" are not personal and read like code: ask for two groups and a digit.
    groups = [g for g in candidate.split("%", 1)[0].split(":") if g]
    if len(groups) < 2 or not any(ch.isdigit() for ch in candidate):
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


def _find_ipv6(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    done = 0
    for hint in _IPV6_HINT.finditer(text):
        if hint.start() < done:
            continue
        start = hint.start()
        while start > max(done, hint.start() - 40) and text[start - 1] in _HEX_OR_COLON:
            start -= 1  # the hint may sit after the first group or two (1:2::3)
        if text.startswith(":", start) and not text.startswith("::", start):
            start += 1  # a label's colon, as in "IP:2001:db8::1"
        if start > 0 and _glued(text[start - 1]):
            continue  # std::vector, a longer token
        body = _IPV6_BODY.match(text, start)
        assert body is not None  # the hint itself matches the body pattern
        end = body.end()
        while end > start and text[end - 1] == ".":
            end -= 1  # end of a sentence
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        if _is_ipv6(text[start:end]):
            spans.append((start, end))
            done = end
    return spans


@functools.lru_cache(maxsize=4096)
def _phone_spans(candidate: str) -> tuple[tuple[int, int], ...]:
    """Where `candidate` holds phone numbers. Cached: the same digit runs (a help line, a
    date with a time) recur across conversations, and each call costs 30-300 us. The cache
    lives in memory only."""
    # STRICT_GROUPING: valid in its region and, if grouped, grouped the way that region
    # writes numbers; this rejects "2024-03-15 12", otherwise a valid number in area 202.
    # The matcher also finds a number inside a longer run ("1985 415-555-2671").
    matcher = PhoneNumberMatcher(candidate, DEFAULT_PHONE_REGION, Leniency.STRICT_GROUPING)
    return tuple((match.start, match.end) for match in matcher)


def _scrub_phones(text: str, counts: Counter[str]) -> str:
    def replace(m: re.Match[str]) -> str:
        found = m.group()
        n_digits = len(_NON_DIGIT.sub("", found))
        if n_digits < (8 if found[0] == "+" else 10) or _DECIMAL.fullmatch(found):
            return found
        return _splice(found, _phone_spans(found), "PHONE", counts)

    return _PHONE_CANDIDATE.sub(replace, text)


# ---------------------------------------------------------------------------------------------
# Public API.


def scrub_text(text: str, counts: Counter[str] | None = None) -> str:
    """Return `text` with personal data replaced by placeholders such as "[EMAIL]".

    If `counts` is given, the number of replacements of each kind ("EMAIL", "PHONE", ...) is
    added to it.
    """
    if counts is None:
        counts = Counter()
    # Repeat until nothing is found, which makes scrubbing idempotent by construction: removing
    # one item can expose another (a phone number the matcher skipped inside a longer digit
    # run stands alone once its neighbour is a placeholder). Every round that finds something
    # removes digits, '@' or a URL anchor, so the loop ends; text with nothing found costs one.
    while True:
        before = counts.total()
        text = _scrub_once(text, counts)
        if counts.total() == before:
            return text


def _scrub_once(text: str, counts: Counter[str]) -> str:
    # Emails first: "bob@www.example.com" is one email, not "bob@" and a URL.
    if "@" in text:
        text = _splice(text, _find_emails(text), "EMAIL", counts)
    if ("/" in text and "://" in text) or "www." in text or "WWW." in text:
        text = _splice(text, _find_urls(text), "URL", counts)
    # Chained `in` tests on single characters are memchr calls: far cheaper than a regex scan.
    if not (
        "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
        or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
    ):
        return text

    shape = text.encode("utf-8", "surrogatepass").translate(_SHAPE)
    long_run = b"000000000" in shape.translate(None, _NUMBER_SEPARATORS)  # card, SSN, phone
    if b"AA00" in shape:  # country code and check digits
        text = _sub(_IBAN, "IBAN", _iban_length, text, counts)
    if long_run:
        text = _sub(_CARD, "CARD", _card_length, text, counts)
        text = _sub(_SSN, "SSN", _ssn_length, text, counts)
    if ":" in text:
        text = _splice(text, _find_ipv6(text), "IP", counts)
    if b"0.0" in shape and _SHAPE_QUAD.search(shape):
        text = _sub(_IPV4, "IP", _ipv4_length, text, counts)
    if long_run:
        text = _scrub_phones(text, counts)
    return text


def scrub_value(value: Any, counts: Counter[str] | None = None) -> Any:
    """Scrub every string inside `value`, walking dicts (keys and values), lists and tuples.

    Other values (numbers, None, bytes) pass through: a number in metadata is far more often an
    id, a count or a timestamp than a phone number, and turning it into a string would change
    the shape of the data. Containers are copied, never changed in place.
    """
    if counts is None:
        counts = Counter()
    if isinstance(value, str):
        return scrub_text(value, counts)
    if isinstance(value, dict):
        return {scrub_value(k, counts): scrub_value(v, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_value(v, counts) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_value(v, counts) for v in value)
    return value
