"""Scrub personal data from text before anything is stored or sent.

Each kind of personal data is replaced by a typed placeholder (`PLACEHOLDERS`): email addresses
(also written to dodge filters: "jane at example dot com", "jane(at)example.com"), phone
numbers, URLs (also "example.com/users/jane", without a scheme), IPv4 and IPv6 addresses,
payment card numbers, US social security numbers, IBANs, and, found by the words around them
(`privacy_cues`), names after a cue and street addresses, in text and in metadata of any type
(a number in metadata is read as its digits).
Placeholders hold nothing any pattern looks for, and `scrub_text` repeats its passes until one
finds nothing (at most `MAX_ROUNDS`), so scrubbing is idempotent.

Why these libraries:
- `phonenumbers` (Google's libphonenumber, kept in step with the world's numbering plans)
  supplies each region's number ranges and national prefix. A digit run is a phone number when it
  carries a country code (+44, 0044), when it is grouped like a phone number (not like a date,
  an amount or an ISBN) and fits the ranges of a region in `config.phone_regions()`
  ($ANNOTATOR_PHONE_REGIONS), or, written without separators, when it is a valid number of the
  main region, a trunk-prefixed national number (0...) or a mobile number of a listed region.
  Ranges, not validity: a well-formed number in a block not yet assigned is still someone's.
- `python-stdnum` supplies the checks: Luhn for cards (12 to 19 digits; 12 to 15 only with a
  brand's issuer prefix), mod-97 plus each country's IBAN length and layout (in either case),
  the never-issued SSN ranges. `ipaddress` (stdlib) validates IP addresses.
- Context words decide what digits alone cannot: nine bare digits are an SSN after "SSN" or
  "social security", a bare digit run is a phone number after "phone", "call", "tel" and the
  like, and not one after "order", "invoice", "tracking" or "ISBN".
- Not Microsoft presidio: its recognisers need a spaCy language model, a download this project
  cannot make at install or run time, and an NLP pipeline far too slow for bulk ingest.
  `bench/scrub.py` compares this module with presidio's pattern recognisers (no NLP engine).
- Not scrubadub: unmaintained since 2023, and its better detectors need the same models.

Speed: ingest scrubs every turn, so ordinary English must cost next to nothing.
- Single-character membership tests (memchr in C) rule families out: no '@', no email; no
  digit, nothing numeric; no ':', no IPv6.
- Text with digits is translated to a byte "shape" (`privacy_cues.shape`, one byte a
  character: digits to 0, capitals to A, small letters to a; the name and address passes
  read the same one) in which substring tests find the hints of each numeric family: 9+ digits in a
  run (cards, SSNs, phones), a card's digit groups, an SSN's 3-2-4, a dotted quad (IPv4), two
  letters and two digits (IBAN). Dates, times, versions, prices and counts give no hint, so
  their text costs that translation and nothing else. A pass runs only on its hint and scans
  from the first one; the hints are read again after a pass replaced something, so one card
  number does not wake the SSN and phone passes once it is a placeholder.
- Every pattern starts with a character class or a literal, never a lookbehind (those come
  after the first character), so `re` skips through the text in C instead of trying the whole
  pattern at each position. Emails and URLs are read outwards from their '@', '://' or 'www.'.
- Validators (checksums, `phonenumbers`) run on candidates only; phone results are cached.
- A round after the first skips the passes that already saw the same text unchanged.
Linear time, whatever the input: every pattern reads a bounded window around its anchor, a
candidate that fails is skipped whole (a 200 kB run of "1:1:1:" is one failed IPv6 candidate,
not 100,000), and `scrub_text` makes at most `MAX_ROUNDS` passes.
Passes run most specific first: a URL may hold an IP or digits, an IBAN holds card-like groups,
and the phone pass, last, would accept some of the others' digit runs.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, Final

import phonenumbers
from phonenumbers import PhoneMetadata
from stdnum import iban as _iban
from stdnum import isbn as _isbn
from stdnum import luhn as _luhn

from annotator.config import phone_regions
from annotator.ingest.privacy_cues import find_addresses, find_names, may_hold_names
from annotator.ingest.privacy_cues import shape as _shape

__all__ = [
    "MAX_ROUNDS",
    "PII_TYPES",
    "PLACEHOLDERS",
    "scrub_text",
    "scrub_value",
]

PII_TYPES: Final[tuple[str, ...]] = (
    "EMAIL", "PHONE", "URL", "IP", "CARD", "SSN", "IBAN", "NAME", "ADDRESS",
)
PLACEHOLDERS: Final[dict[str, str]] = {kind: f"[{kind}]" for kind in PII_TYPES}

# Passes of `scrub_text`: one finds nearly everything; a second finds what the first exposed
# (a number standing alone once its neighbour is a placeholder). The cap keeps hostile input
# linear: a chain of items each hidden by the next would otherwise cost a pass per item.
MAX_ROUNDS: Final[int] = 4

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ---------------------------------------------------------------------------------------------
# Patterns. Digits are written [0-9], not \d, so other scripts' digits never reach the checks.

# Which numeric families have a hint, read from the text's shape (`privacy_cues.shape`: one
# byte a character, every digit "0", capitals "A", small letters "a"): bytes.translate and
# substring tests run in C at about a nanosecond a character, several times faster than a regex
# scan for a digit class. The same shape serves the name and address passes after these.
_NUMBER_SEPARATORS: Final = b" .()-"
# Country code and check digits, where an IBAN starts (either case): found from the literal
# digits, which `re` searches for in C.
_SHAPE_IBAN: Final = re.compile(rb"00(?<=[Aa][Aa]00)")
_SHAPE_QUAD: Final = re.compile(rb"0\.0{1,3}\.0{1,3}\.0")
# What every match of `_CARD` and `_SSN` holds, in the shape: twelve digits in a row or the
# digit groups of a printed card; 3-2-4 digits with one separator. A text with a long digit run
# (a phone number, an IP address) rarely has either, and the shape is searched from a literal
# "0000", several times faster than the patterns' scan of the text from a digit class.
_SHAPE_CARD: Final = re.compile(rb"0000(?:0{8}|([ .\-])0000\1(?:0000)|([ .\-])000000\2(?:0000))")
_SHAPE_SSN: Final = re.compile(rb"000([ .\-])00\1(?:0000)")

# 12 to 19 digits, contiguous or in the groupings cards are printed with (4-4-4[-4][-1..4],
# 4-6-5 Amex, 4-6-4 Diners), one separator throughout: space, dash or dot. Thousands groups of
# three never fit. A first digit of 2-6 covers the networks (Mastercard 2/5, Amex, Diners and
# JCB 3, Visa 4, Maestro 5/6, Discover and UnionPay 6).
_CARD: Final = re.compile(
    r"[2-6](?<![\w.+\-][2-6])(?:"
    r"[0-9]{11,18}"
    r"|[0-9]{3}(?P<s>[ .\-])[0-9]{4}(?P=s)[0-9]{4}(?:(?P=s)[0-9]{1,4}(?:(?P=s)[0-9]{1,4})?)?"
    r"|[0-9]{3}(?P<t>[ .\-])[0-9]{6}(?P=t)[0-9]{4,5}"
    r")(?![0-9]|[.\-][0-9])"
)
# Lengths below 16 are rarer and collide with order numbers: they need their brand's prefix.
_SHORT_CARD_PREFIXES: Final[dict[int, tuple[str, ...]]] = {
    12: ("50", "56", "57", "58", "6"),  # Maestro
    13: ("4", "50", "56", "57", "58", "6"),  # Visa, Maestro
    14: ("30", "36", "38", "39", "50", "56", "57", "58", "6"),  # Diners, Maestro
    15: ("34", "37", "2131", "1800", "50", "56", "57", "58", "6"),  # Amex, JCB, Maestro
}

# 3-2-4 digits with one separator (dash, space or dot), or nine bare digits after a context
# word (alone they are anything: an order, a zip+4, a count).
_SSN: Final = re.compile(
    r"[0-9](?<![\w.\-+][0-9])(?<![0-9][ .\-][0-9])[0-9]{2}(?P<s>[\- .])[0-9]{2}(?P=s)[0-9]{4}"
    r"(?!\w|[\-. ][0-9])"
)
_SSN_BARE: Final = re.compile(r"[0-9](?<![\w.\-+][0-9])[0-9]{8}(?![\w\-]|\.[0-9])")
_SSN_CONTEXT: Final = re.compile(
    r"(?i)\b(?:ssn|ss#|ss ?no|soc(?:ial)?\.? ?sec(?:urity)?|social insurance|tax ?id|tin)\b"
)

# Never issued, yet written as SSNs: the Woolworth wallet card's 078-05-1120, the 1940s
# advertisement's 219-09-9999 and the textbook 123-45-6789. stdnum rejects the first two.
_FAMOUS_SSNS: Final = frozenset({"078051120", "219099999", "123456789"})


def _issuable_ssn(digits: str) -> bool:
    """stdnum's `us.ssn.is_valid` on nine digits: no area 000, 666 or 9xx, no group 00, no
    serial 0000, and none of its three blacklisted numbers (two of them famous: see above, read
    first by the callers). Written out because the call costs
    more than the rest of the SSN pass (it cleans, matches a regex and formats the number
    again); `test_issuable_ssn_is_stdnums_rule` holds the two to the same answers."""
    area = digits[:3]
    return (area != "000" and area != "666" and area[0] != "9" and digits[3:5] != "00"
            and digits[5:] != "0000" and digits not in _STDNUM_BLACKLIST)


_STDNUM_BLACKLIST: Final = frozenset({"078051120", "457555462", "219099999"})

# Compact (up to 34 characters) or printed in groups of four, in either case.
_IBAN: Final = re.compile(
    r"[A-Z](?<!\w[A-Z])[A-Z][0-9]{2}"
    r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?!\w)",
    re.IGNORECASE | re.ASCII,
)

# Not part of a longer dotted sequence (1.2.3.4.5) or of a word (v1.2.3.4); octets checked by
# `ipaddress`.
_IPV4: Final = re.compile(r"[0-9](?<![\w.][0-9])[0-9]{0,2}(?:\.[0-9]{1,3}){3}(?!\.?\w)")
_VERSION_BEFORE: Final = re.compile(r"(?i)\b(?:version|ver\.?|v|release|build|update) ?[:=]? ?\Z")

# Every IPv6 address has "::" or seven colons between groups of at most four hex digits, so
# three groups in a row; times (12:30:45) have two. Find that (a literal first character is
# fast), then read the whole candidate around it.
_IPV6_HINT: Final = re.compile(r":(?::|[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:)")
_IPV6_BODY: Final = re.compile(r"[0-9A-Fa-f:.]+(?:%[0-9A-Za-z_.\-]{1,32})?")
_IPV6_MAX: Final = 45 + 33  # the longest address (an IPv4 tail) and a zone
_HEX_OR_COLON: Final = frozenset("0123456789abcdefABCDEF:")

# Digits with the separators people put in phone numbers; no '/', ':' or ',' (dates, times,
# thousands), and an extension ("x 123", "ext. 12"). Not glued to a Latin word or number
# (ab123..., v1.2...); Chinese and Japanese write a number right after a word (电话139...).
# The length cap bounds the work per candidate; a number cut in two by it is found by the
# next round of `scrub_text`.
_PHONE_CANDIDATE: Final = re.compile(
    r"[+(0-9](?<![A-Za-z0-9_+.\-/][+(0-9])[0-9()\-. ]{4,46}[0-9]"
    r"(?:(?: ?x| ?ext\.? ?)[0-9]{1,6}(?![0-9]))?"
)
# The most characters a phone candidate holds before its first digit: its first character and
# all but the last of its {4,46} middle.
_PHONE_LEAD: Final = 47
_YEAR_FIRST: Final = re.compile(r"(?:19|20)[0-9]{2} +")
_PHONE_EXTENSION: Final = re.compile(r"(?: ?x| ?ext\.? ?)[0-9]{1,6}\Z")
_DIGIT_GROUPS: Final = re.compile(r"[0-9]+")
_DIGIT_BYTES: Final = b"0123456789"
_DECIMAL: Final = re.compile(r"[0-9]+[.,][0-9]+")
_NON_DIGIT: Final = re.compile(r"[^0-9]+")
# Read in the 32 characters before a bare digit run: a phone word up to three words before it
# ("call me on ...", "Tel.: ..."), or a word naming it something else right before it.
_PHONE_WORDS: Final = re.compile(
    r"(?i)(?:\b(?:tele?phone|phone|ph|tel|call|mobile|cell|fax|whatsapp|sms|text me|ring|dial|"
    r"my number|number is|contact|reach|tlf|telefon|téléphone|handy|móvil|celular)\b"
    r"|电话|手机|電話|携帯)\W{0,6}(?:\w+\W{1,3}){0,3}\Z"
)
_NOT_PHONE_NAMES: Final = (
    "order|invoice|inv|tracking|ticket|isbn|issn|ref|reference|serial|sku|part|rma|"
    "shipment|parcel|confirmation|booking|receipt|transaction|"
    "model|account|acct|case|po|batch|lot|id|build|version|timestamp|epoch|zip|postcode"
)
_NOT_PHONE_WORDS: Final = re.compile(
    rf"(?i)\b(?:{_NOT_PHONE_NAMES})\b\W{{0,6}}(?:no\.?|nr\.?|number|#|id)?\W{{0,3}}\Z"
)
_NOT_PHONE_SET: Final = frozenset(_NOT_PHONE_NAMES.split("|"))
_WORD_RUN: Final = re.compile(r"\w+")


def _named_otherwise(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` ends with a word naming the number after it something other
    than personal data ("order ID", "invoice no", "RMA"): `_NOT_PHONE_WORDS`. Its word is the
    last word or the one before: looked up first, the pattern tried only when one is named."""
    reverse = text[start:end][::-1]
    last = _WORD_RUN.search(reverse)
    if last is None:
        return False
    if last.group()[::-1].casefold() not in _NOT_PHONE_SET:
        before = _WORD_RUN.search(reverse, last.end())
        if before is None or before.group()[::-1].casefold() not in _NOT_PHONE_SET:
            return False
    # The pattern itself, on the text: its \b sees the character before `start`.
    return _NOT_PHONE_WORDS.search(text, start, end) is not None


# Emails and URLs are read outwards from their anchor.
_LOCAL_CHARS: Final = frozenset("._+-'%")  # with str.isalnum: what a local part is made of
# Labels of any script; the top-level label Latin letters (or punycode), so that a Japanese
# sentence going on right after ".jp" is not read as part of it.
_EMAIL_DOMAIN: Final = re.compile(
    r"(?:[^\W_](?:[\w\-]{0,61}[^\W_])?\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9\-]{1,59})"
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9])"
)
_DOMAIN_MAX: Final = 253
_URL_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,15}\Z")  # backwards from '://'
_URL_BODY: Final = re.compile(r"[^\s<>\"'`]*")
_URL_TRAILING: Final = ".,;:!?*_~'\""
_URL_CLOSERS: Final = {")": "(", "]": "[", "}": "{"}
_WORDISH: Final = frozenset(".+-_")  # with str.isalnum: characters that glue onto a token


def _glued(ch: str) -> bool:
    return ch.isalnum() or ch in _WORDISH


def _glued_before_email(ch: str) -> bool:
    """Like `_glued`, except that Chinese and Japanese (U+2E80 on) write an address right
    after a word (邮箱li@example.cn): that does not make it part of a longer token."""
    return ch < "\u2e80" and _glued(ch)


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
         text: str, counts: Counter[str], start: int) -> str:
    """Replace the first `length(match)` characters of each match of `pattern` (0: keep it);
    the caller knows that no match starts before `start`."""
    spans = []
    for m in pattern.finditer(text, start):
        n = length(m)
        if n > 0:
            spans.append((m.start(), m.start() + n))
    return _splice(text, spans, kind, counts)


# ---------------------------------------------------------------------------------------------
# Emails and URLs.


def _url_end(text: str, body_start: int) -> int:
    """End of the URL whose body starts at `body_start`, without trailing punctuation and
    unbalanced closing brackets (a URL in parentheses or at the end of a sentence)."""
    body = _URL_BODY.match(text, body_start)
    assert body is not None  # the pattern accepts the empty string
    end = body.end()
    # Bracket balance counted once, then updated per character removed: counting again for
    # each one would make a body ending in 100,000 ")" quadratic.
    balance = {
        ch: text.count(ch, body_start, end) - text.count(opener, body_start, end)
        for ch, opener in _URL_CLOSERS.items()
    }
    while end > body_start:
        ch = text[end - 1]
        if ch in _URL_TRAILING:
            end -= 1
        elif ch in _URL_CLOSERS and balance[ch] > 0:
            balance[ch] -= 1
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


def _local_start(text: str, at: int, floor: int) -> int:
    """Start of the local part that ends before the '@' at `at`: at most 64 characters back,
    walked one by one (a regex searched over that window would try every start in it)."""
    start = at
    while start > floor and at - start < 64:
        ch = text[start - 1]
        # Chinese and Japanese glue the address to the word before it (邮箱jane@...): their
        # scripts, from U+2E80 on, end a local part.
        if not (ch in _LOCAL_CHARS or ch.isalnum() and ch < "\u2e80"):
            break
        start -= 1
    return start


def _find_emails(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    done = 0
    at = text.find("@")
    while at >= 0:
        start = _local_start(text, at, done)
        # A domain is at most 253 characters: reading no further keeps a run of "a.a.a.a..."
        # after each of many '@' linear.
        domain = _EMAIL_DOMAIN.match(text, at + 1, at + 1 + _DOMAIN_MAX) if start < at else None
        if domain and not (start > 0 and _glued_before_email(text[start - 1])):
            spans.append((start, domain.end()))
            done = domain.end()
        at = text.find("@", max(at + 1, done))
    return spans


# Addresses written to dodge filters: "jane at example dot com", "jane(at)example.com",
# "jane [at] example [dot] com", "jane @ example.com", "jane＠example.com". Spelt-out "at"
# needs a spelt-out "dot" too ("I work at example.com" is not an address).
_AT_WORD: Final = r"(?:[ ]*[(\[{<][ ]*at[ ]*[)\]}>][ ]*|[ ]+at[ ]+|[ ]*[@＠][ ]*)"
_DOT_WORD: Final = r"(?:[ ]*[(\[{<][ ]*dot[ ]*[)\]}>][ ]*|[ ]+dot[ ]+|\.)"
_OBFUSCATED_EMAIL: Final = re.compile(
    rf"(?i)[a-z0-9](?<![\w.+\-][a-z0-9])[\w+\-']{{0,63}}(?:{_DOT_WORD}[\w+\-']{{1,63}}){{0,3}}"
    rf"(?P<at>{_AT_WORD})(?:[a-z0-9][a-z0-9\-]{{0,62}}{_DOT_WORD}){{1,4}}[a-z]{{2,24}}\b"
)
# Cheap tests first: a single character is a memchr; without these no obfuscated address is
# there ("@" is tested by the caller, "＠" and the brackets here, " dot " last).
_AT_BRACKETS: Final = re.compile(r"(?i)[(\[{<] ?at ?[)\]}>]")


def _may_be_obfuscated(text: str) -> bool:
    if "＠" in text or "@" in text and (" @" in text or "@ " in text):
        return True
    if ("(" in text or "[" in text or "{" in text or "<" in text) and _AT_BRACKETS.search(text):
        return True
    return " dot " in text or " DOT " in text


def _find_obfuscated_emails(text: str) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    for m in _OBFUSCATED_EMAIL.finditer(text):
        at = m.group("at")
        if at.strip().lower() == "at" and "dot" not in m.group().lower():
            continue
        if at.strip() in ("@", "＠") and at == at.strip() and "＠" not in at:
            continue  # a plain address: the email pass has it
        spans.append(m.span())
    return spans


# Top-level domains read as a web address without a scheme ("linkedin.com/in/jane"); file
# names (Node.js/React, main.py/...) have other endings.
_TLDS: Final = _words("""
com org net edu gov mil int info biz io co me tv app dev ai xyz online site blog page tech
cloud shop store news uk de fr es it nl se pl pt br ch at be dk no fi ie eu us ca au nz in jp
cn kr ru ua tr mx ar cl za ng ke eg il sa ae sg my id ph vn th hk tw gr cz sk hu ro bg hr si
lt lv ee is lu
""")
_HOST: Final = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.)+([A-Za-z]{2,24})")


def _find_bare_urls(text: str) -> list[tuple[int, int]]:
    """Web addresses without a scheme or "www.", with a path: "example.com/users/jdoe".
    A bare domain without a path ("see example.com") is a site, not a person's page."""
    spans: list[tuple[int, int]] = []
    done = 0
    at = text.find("/")
    while at >= 0:
        if at > done and text[at - 1].isalpha() and at + 1 < len(text) and (
            text[at + 1].isalnum() or text[at + 1] in "~%_-@"
        ):
            start = at
            while start > max(done, at - _DOMAIN_MAX) and (
                text[start - 1].isalnum() and text[start - 1].isascii() or text[start - 1] in ".-"
            ):
                start -= 1
            host = _HOST.fullmatch(text, start, at)
            if host and host.group(1).lower() in _TLDS and not (
                start > 0 and (_glued(text[start - 1]) or text[start - 1] in "/@:")
            ):
                end = _url_end(text, at)
                spans.append((start, end))
                done = end
        at = text.find("/", max(at + 1, done))
    return spans


# ---------------------------------------------------------------------------------------------
# Numeric families: each check returns how many leading characters of the candidate are PII.


@functools.lru_cache(maxsize=1024)
def _is_card(digits: str) -> bool:
    if not 12 <= len(digits) <= 19 or not _luhn.is_valid(digits):
        return False
    prefixes = _SHORT_CARD_PREFIXES.get(len(digits))
    return prefixes is None or digits.startswith(prefixes)


def _card_length(m: re.Match[str]) -> int:
    length = _luhn_card_length(m.group())
    if length and _named_otherwise(m.string, max(0, m.start() - 32), m.start()):
        return 0  # "order ID 4111...", "invoice no 3782...": named as something else
    return length


def _luhn_card_length(candidate: str) -> int:
    spans = [candidate]
    cut = max(candidate.rfind(" "), candidate.rfind("-"), candidate.rfind("."))
    if cut > 0:  # "4111 1111 1111 1111 12/25": the 12 is an expiry month, not card digits
        spans.append(candidate[:cut])
    for span in spans:
        if _is_card(_NON_DIGIT.sub("", span)):
            return len(span)
    return 0


def _ssn_length(m: re.Match[str]) -> int:
    digits = _NON_DIGIT.sub("", m.group())
    return len(m.group()) if digits in _FAMOUS_SSNS or _issuable_ssn(digits) else 0


def _bare_ssn_length(m: re.Match[str]) -> int:
    """Nine bare digits with an SSN word a few words before ("SSN is") or after ("... is my
    SSN"); alone they are anything."""
    before = m.string[max(0, m.start() - 40) : m.start()]
    after = m.string[m.end() : m.end() + 24]
    if not (_SSN_CONTEXT.search(before) or _SSN_CONTEXT.search(after)):
        return 0
    return len(m.group()) if m.group() in _FAMOUS_SSNS or _issuable_ssn(m.group()) else 0


_MOD97_DIGITS: Final = {ord(ch): str(int(ch, 36)) for ch in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}


def _mod97_ok(span: str) -> bool:
    """The IBAN checksum alone, in a few microseconds: stdnum's full check (country, length,
    layout) costs several times more and runs only on what passes this."""
    compact = span.replace(" ", "").upper()
    if not compact.isascii() or not compact.isalnum():
        return False
    return int((compact[4:] + compact[:4]).translate(_MOD97_DIGITS)) % 97 == 1


@functools.lru_cache(maxsize=1024)
def _is_iban(span: str) -> bool:
    """stdnum's check (country, length, layout), cached: it builds a regex per call, and the
    same account recurs across a customer's conversations."""
    return _iban.is_valid(span)


def _iban_length(m: re.Match[str]) -> int:
    span = m.group()
    while len(span) >= 15:
        if _mod97_ok(span) and _is_iban(span):
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
    done = 0  # everything before this was found or ruled out
    for hint in _IPV6_HINT.finditer(text):
        if hint.start() < done:
            continue
        start = hint.start()
        while start > max(done, hint.start() - 40) and text[start - 1] in _HEX_OR_COLON:
            start -= 1  # the hint may sit after the first group or two (1:2::3)
        if text.startswith(":", start) and not text.startswith("::", start):
            start += 1  # a label's colon, as in "IP:2001:db8::1"
        body = _IPV6_BODY.match(text, start)
        assert body is not None  # the hint itself matches the body pattern
        end = body.end()
        done = max(done, end)  # a failed candidate is skipped whole: no hint inside it is tried
        if start > 0 and _glued(text[start - 1]):
            continue  # std::vector, a longer token
        while end > start and text[end - 1] == ".":
            end -= 1  # end of a sentence
        if end - start > _IPV6_MAX:
            continue  # longer than any address
        if end < len(text) and (text[end].isalnum() or text[end] == "_"):
            continue
        if _is_ipv6(text[start:end]):
            spans.append((start, end))
    return spans


# --- phone numbers ---------------------------------------------------------------------------


class _Ranges:
    """The number ranges of the configured regions, each as one regular expression, so a
    candidate costs a few regex calls, not a parse per region (40 parses of 10-20 us each
    would make a page of digit runs slow, and hostile input slower)."""

    def __init__(self, regions: tuple[str, ...]) -> None:
        self.main = regions[0] if regions else "US"
        general: list[str] = []
        mobile: list[str] = []
        trunk: list[str] = []  # regions written nationally with a leading 0
        for region in regions:
            meta = PhoneMetadata.metadata_for_region(region)
            if meta is None or meta.general_desc is None:
                continue
            pattern = meta.general_desc.national_number_pattern
            if pattern:
                general.append(pattern)
                if meta.national_prefix == "0":
                    trunk.append(pattern)
            if meta.mobile is not None and meta.mobile.national_number_pattern:
                mobile.append(meta.mobile.national_number_pattern)
        self.general = _union(general)
        self.mobile = _union(mobile)
        self.trunk = _union(trunk)

    def fits(self, digits: str) -> bool:
        """In a range of a configured region, written with or without its trunk prefix."""
        if self.general.fullmatch(digits):
            return True
        return digits[:1] in "01" and bool(self.general.fullmatch(digits[1:]))

    def national(self, digits: str) -> bool:
        """A trunk-prefixed national number (0131 4960774) or a long mobile (CN 150...)."""
        if digits.startswith("0") and not digits.startswith("00"):
            return bool(self.trunk.fullmatch(digits[1:]))
        return len(digits) >= 11 and bool(self.mobile.fullmatch(digits))


def _union(patterns: list[str]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{p})" for p in dict.fromkeys(patterns)))


@functools.lru_cache(maxsize=8)
def _ranges(regions: tuple[str, ...]) -> _Ranges:
    return _Ranges(regions)


def _grouped_like_a_phone(candidate: str, groups: list[str]) -> bool:
    """Digit groups as phone numbers are written, not as dates, amounts, versions, ISBNs or
    card-like blocks of four."""
    sizes = [len(g) for g in groups]
    if any(size == 1 for size in sizes[1:]) and "(0)" not in candidate:
        return False  # 978-3-16-148410-0, 120.0.6099.109
    if len(sizes) >= 3 and all(size == 3 for size in sizes[1:]) and sizes[0] <= 3:
        return False  # 299 792 458, 1.234.567
    if sizes in ([4, 2, 2], [2, 2, 4], [4, 2, 2, 2], [4, 2, 2, 3], [3, 2, 4]):
        return False  # 2024-03-15, 15.03.2024; 3-2-4 is an SSN's layout (a never-issued one)
    return not (len(sizes) >= 3 and sizes[:3] == [4, 4, 4])  # 1234 5698 7654 32: a card, an IBAN


def _is_phone(candidate: str, before: str, ranges: _Ranges) -> bool:
    """Whether the whole of `candidate` (an extension already cut off) is a phone number."""
    if _DECIMAL.fullmatch(candidate):
        return False
    groups = _DIGIT_GROUPS.findall(candidate)
    digits = "".join(groups)
    if candidate[0] == "+":  # a country code: nothing else is written that way
        return 7 <= len(digits) <= 15
    if not 9 <= len(digits) <= 15 or _named_otherwise(before, 0, len(before)):
        return False
    if len(digits) == 13 and digits.startswith(("978", "979")) and _isbn.is_valid(digits):
        return False  # an ISBN-13; ISBN-10s are grouped with single digits, rejected below
    if len(groups) > 1:
        if not _grouped_like_a_phone(candidate, groups) and not (
            # 692 476 762 after "call", 039 912 284: thousands never start with 0
            len(groups) == 3 and all(len(g) == 3 for g in groups)
            and (groups[0][0] == "0" or _PHONE_WORDS.search(before))
        ):
            return False
        return ranges.fits(digits) or digits.startswith("00")
    if ranges.national(digits) or (_PHONE_WORDS.search(before) and ranges.fits(digits)):
        return True
    return _valid_in_main_region(digits, ranges.main)


@functools.lru_cache(maxsize=4096)
def _valid_in_main_region(digits: str, region: str) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(digits, region))
    except phonenumbers.NumberParseException:
        return False


@functools.lru_cache(maxsize=4096)
def _phone_spans(candidate: str, before: str, regions: tuple[str, ...]) -> tuple[
        tuple[int, int, str], ...]:
    """Where `candidate` holds phone numbers, each with its kind: "CARD" for a Luhn-valid run
    of 13 characters or more (never a phone), else "PHONE". Cached: the same digit runs (a
    help line, a date with a time) recur across conversations. The cache lives in memory only.
    """
    return tuple(
        (a, b, "CARD" if b - a >= 13 and _is_card(_NON_DIGIT.sub("", candidate[a:b])) else "PHONE")
        for a, b in _phone_number_spans(candidate, before, regions)
    )


def _phone_number_spans(candidate: str, before: str, regions: tuple[str, ...]) -> tuple[
        tuple[int, int], ...]:
    """Where `candidate` holds phone numbers (`_phone_spans`, uncached)."""
    ranges = _ranges(regions)
    extension = _PHONE_EXTENSION.search(candidate)
    number = candidate[: extension.start()] if extension else candidate
    year = _YEAR_FIRST.match(number)
    if year and _is_phone(number[year.end() :], "", ranges):
        return ((year.end(), len(candidate)),)  # "born 1985 415-555-2671"
    if _is_phone(number, before, ranges):
        return ((0, len(candidate)),)
    # Several numbers, or a number beside other digits ("call 415-555-2671 2 times"): each
    # space-separated piece on its own.
    spans: list[tuple[int, int]] = []
    at = 0
    for piece in number.split(" "):
        if len(piece) > 1 and _is_phone(piece, before if at == 0 else "", ranges):
            spans.append((at, at + len(piece)))
        at += len(piece) + 1
    return tuple(spans)


def _scrub_phones(text: str, counts: Counter[str], start: int) -> str:
    """Replace the phone numbers among the candidates from `start` on."""
    regions: tuple[str, ...] = ()  # read on the first candidate long enough to need them
    spans: list[tuple[int, int]] = []
    cards: list[tuple[int, int]] = []
    for m in _PHONE_CANDIDATE.finditer(text, start):
        found = m.group()
        need = 7 if found[0] == "+" else 9  # digits a number needs, with a country code or not
        # A candidate shorter than that cannot hold them: no need to count its digits. It is
        # ASCII, one byte a character: its digits are what deleting them takes away (a
        # translate, several times cheaper than a regex substitution).
        if len(found) < need or (
            len(found) - len(found.encode().translate(None, _DIGIT_BYTES)) < need
        ):
            continue
        # The environment is read here, not for every text: most digit runs are too short.
        regions = regions or phone_regions()
        at = m.start()
        before = text[max(0, at - 32) : at]
        for a, b, kind in _phone_spans(found, before, regions):
            (spans if kind == "PHONE" else cards).append((at + a, at + b))
    if cards:
        return _splice_two(text, cards, "CARD", spans, "PHONE", counts)
    return _splice(text, spans, "PHONE", counts)


def _splice_two(text: str, first: list[tuple[int, int]], first_kind: str,
                second: list[tuple[int, int]], second_kind: str, counts: Counter[str]) -> str:
    """`_splice` of two kinds' spans, which do not overlap, in one pass."""
    kinds = sorted([(a, b, first_kind) for a, b in first]
                   + [(a, b, second_kind) for a, b in second])
    parts: list[str] = []
    done = 0
    for start, end, kind in kinds:
        parts += (text[done:start], PLACEHOLDERS[kind])
        counts[kind] += 1
        done = end
    parts.append(text[done:])
    return "".join(parts)


# ---------------------------------------------------------------------------------------------
# Public API.


# Where the counts of a caller that asks for none go: read by no one.
_UNCOUNTED: Final[Counter[str]] = Counter()


def scrub_text(text: str, counts: Counter[str] | None = None) -> str:
    """Return `text` with personal data replaced by placeholders such as "[EMAIL]".

    If `counts` is given, the number of replacements of each kind ("EMAIL", "PHONE", ...) is
    added to it.
    """
    if text.isalpha():  # letters only (a word, a metadata key): nothing any pass looks for
        return text
    if counts is None:
        counts = _UNCOUNTED  # a new Counter a call would cost a tenth of a short text's scrub
    # Repeat until nothing is found, which makes scrubbing idempotent: removing one item can
    # expose another (a phone number the matcher skipped inside a longer digit run stands alone
    # once its neighbour is a placeholder). Text with nothing found costs one round; at most
    # MAX_ROUNDS, so a hostile chain of such items stays linear. The round is written out here,
    # not called: most text costs a few membership tests, and a call adds to them.
    # A round after one that found something skips the numeric passes when they last ran over
    # this very text and left it as it was (the round's finds were emails or URLs): they would
    # find nothing again.
    seen: str | None = None
    shaped: bytes | None = None  # the shape of `shaped_text`, kept for the cue passes
    shaped_text: str | None = None
    first_round = True
    for _ in range(MAX_ROUNDS):
        scrubbed = text
        # Emails first: "bob@www.example.com" is one email, not "bob@" and a URL.
        if "@" in scrubbed:
            scrubbed = _splice(scrubbed, _find_emails(scrubbed), "EMAIL", counts)
        if ("/" in scrubbed and "://" in scrubbed) or "www." in scrubbed or "WWW." in scrubbed:
            scrubbed = _splice(scrubbed, _find_urls(scrubbed), "URL", counts)
        if first_round:
            # Written-out addresses and scheme-less URLs: once, as no later replacement makes
            # one (placeholders hold no "/", "@" or " dot ").
            first_round = False
            # The tests of `_may_be_obfuscated` that most text fails, here: a call less.
            if (" dot " in scrubbed or " DOT " in scrubbed or "＠" in scrubbed
                    or "@" in scrubbed or "(" in scrubbed or "[" in scrubbed
                    or "{" in scrubbed or "<" in scrubbed) and _may_be_obfuscated(scrubbed):
                scrubbed = _splice(scrubbed, _find_obfuscated_emails(scrubbed), "EMAIL", counts)
            if "/" in scrubbed:
                scrubbed = _splice(scrubbed, _find_bare_urls(scrubbed), "URL", counts)
        if scrubbed is seen:
            break
        # Chained `in` tests on single characters are memchr calls: far cheaper than a regex.
        if (
            "0" in scrubbed or "1" in scrubbed or "2" in scrubbed or "3" in scrubbed
            or "4" in scrubbed or "5" in scrubbed or "6" in scrubbed or "7" in scrubbed
            or "8" in scrubbed or "9" in scrubbed
        ):
            numbered, shaped = _scrub_numbers(scrubbed, counts)
            shaped_text = numbered
            if numbered is scrubbed:
                seen = scrubbed
            else:
                seen, scrubbed = None, numbered
        if scrubbed == text:  # every replacement changes the text; a C compare, no counting
            break
        text = scrubbed
    # The numeric passes' shape of the text, when they made it from this very text: one
    # translation a text, not two.
    if shaped is None or shaped_text is not text and shaped_text != text:
        shaped = _shape(text)
    # Addresses, then names (`privacy_cues`), after the other passes: a postcode read before
    # the phone pass could take the tail of a phone number ("+49 30 12345 Berlin"). Most text
    # has no capitalised word inside a sentence and no number, and costs two searches of its
    # shape. Written out here, not called: a call costs as much as those searches.
    if shaped.find(b"0") >= 0:  # every address found has a number
        found = find_addresses(text, shaped)
        if found:
            text = _splice(text, found, "ADDRESS", counts)
            shaped = _shape(text)
    if may_hold_names(shaped):
        found = find_names(text, shaped)
        if found:
            text = _splice(text, found, "NAME", counts)
    return text


def _scrub_numbers(text: str, counts: Counter[str]) -> tuple[str, bytes | None]:
    """One round of the numeric passes (IBAN, card, SSN, IP, phone) over text with a digit,
    and the shape of the text it returns when it has it (None when the phone pass changed it).

    Each pass runs only when the shape holds what every match of its pattern holds, and scans
    from the first place that does (`finditer` from there: lookbehinds still read the text
    before it), so a long turn with a number near its end costs a short scan.
    """
    # The hints are read again after a pass that replaced something: a turn with one card
    # number has no long digit run once the card is a placeholder, and the later passes it
    # would have woken (SSN, phone numbers) are skipped.
    shape, first, long_run = _numeric_hints(text)
    # The phone pass runs when the text had a long run before these passes (a number with its
    # country code and only seven digits is found then, and only then); it is skipped when
    # the passes before it left nothing it could find (see below).
    phones = long_run
    hint = _SHAPE_IBAN.search(shape)
    if hint:
        scrubbed = _sub(_IBAN, "IBAN", _iban_length, text, counts, hint.start() - 2)
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    hint = _SHAPE_CARD.search(shape) if long_run else None
    if hint:
        scrubbed = _sub(_CARD, "CARD", _card_length, text, counts, hint.start())
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    hint = _SHAPE_SSN.search(shape) if long_run else None
    if hint:
        scrubbed = _sub(_SSN, "SSN", _ssn_length, text, counts, hint.start())
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    # Bare runs of nine are rare; the context word is read only before one (a search for the
    # words over the whole text would cost more than the scan for the digits).
    at = shape.find(b"000000000") if long_run else -1
    if at >= 0:
        scrubbed = _sub(_SSN_BARE, "SSN", _bare_ssn_length, text, counts, at)
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    if ":" in text:
        scrubbed = _splice(text, _find_ipv6(text), "IP", counts)
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    hint = _SHAPE_QUAD.search(shape) if shape.find(b"0.0") >= 0 else None
    if hint:  # found at the last digit of the first octet, at most two after the address
        scrubbed = _sub(_IPV4, "IP", _ipv4_length, text, counts, max(0, hint.start() - 2))
        if scrubbed != text:
            text, (shape, first, long_run) = scrubbed, _numeric_hints(scrubbed)
    # What the phone pass replaces has nine digits with only separators between them, or is a
    # '+' and seven such digits. A candidate starts at most `_PHONE_LEAD` characters before
    # its first digit.
    if phones and (long_run or "+" in text and (
        shape.translate(None, _NUMBER_SEPARATORS).find(b"+0000000") >= 0
    )):
        scrubbed = _scrub_phones(text, counts, max(0, first - _PHONE_LEAD))
        if scrubbed is not text:
            return scrubbed, None
    return text, shape


def _numeric_hints(text: str) -> tuple[bytes, int, bool]:
    """The shape of `text`, where its first digit is, and whether it has a long digit run:
    nine digits with only separators between them, which cards, SSNs and phone numbers need.

    The shape has one byte a character (see `privacy_cues.shape`), so a place in the shape is
    the same place in the text.
    """
    shape = _shape(text)
    # `bytes.find`, not `in`: `needle in shape` first tries the needle as an integer and
    # formats an exception to drop when it is not, which costs more than the search itself.
    # The run is looked for between the first and the last digit: deleting separators from
    # that stretch alone costs less.
    first, last = shape.find(b"0"), shape.rfind(b"0")
    long_run = last - first >= 8 and (
        shape[first : last + 1].translate(None, _NUMBER_SEPARATORS).find(b"000000000") >= 0
    )
    return shape, first, long_run


def scrub_value(value: Any, counts: Counter[str] | None = None, key: Any = None) -> Any:
    """Scrub every string and number inside `value`, walking dicts (keys and values), lists
    and tuples; `key` is the dict key `value` sits under, read as context ("ssn": 536904399).

    A number holding personal data (`"card": 4111111111111111`) becomes its placeholder string;
    other numbers, None, booleans and bytes pass through unchanged. Containers are copied, never
    changed in place.
    """
    if counts is None:
        counts = Counter()
    if isinstance(value, str):
        return scrub_text(value, counts)
    if isinstance(value, dict):
        # Strings, the common keys and values, go straight to scrub_text: a call less each.
        return {
            (scrub_text(k, counts) if type(k) is str else scrub_value(k, counts)): (
                scrub_text(v, counts) if type(v) is str else scrub_value(v, counts, key=k)
            )
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub_value(v, counts, key) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub_value(v, counts, key) for v in value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _scrub_number(value, key, counts)
    return value


def _scrub_number(value: int | float, key: Any, counts: Counter[str]) -> Any:
    """`value`, or the placeholder of what its digits are. Only whole numbers of 9 digits or
    more can be any kind of personal data; the key, when it is plain text, is the context."""
    if isinstance(value, float) and not value.is_integer():
        return value
    digits = str(abs(int(value))) if abs(value) < 1e20 else ""
    if len(digits) < 9:
        return value
    context = f"{key}: " if isinstance(key, str) and len(key) <= 64 else ""
    if context and scrub_text(context) != context:
        context = ""  # the key is itself personal data: no help reading the number
    found: Counter[str] = Counter()
    scrubbed = scrub_text(context + digits, found)
    if not found:
        return value
    counts.update(found)
    return scrubbed[len(context) :] if scrubbed.startswith(context) else scrubbed
