"""Scrubbing: each kind of personal data is found, near-misses are left alone, counts add up,
scrubbing twice changes nothing, and metadata is walked."""

from __future__ import annotations

import time
from collections import Counter

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum import iban, luhn

from annotator.ingest.privacy import PII_TYPES, PLACEHOLDERS, scrub_text, scrub_value

# (kind, text). Each text is embedded in a sentence by the tests below.
POSITIVES = [
    ("EMAIL", "jane.doe@example.com"),
    ("EMAIL", "first.last+newsletter@example.org"),
    ("EMAIL", "ops-team@mail.eu.example.co.uk"),
    ("EMAIL", "USER_42@EXAMPLE.COM"),
    ("PHONE", "+1 415-555-2671"),
    ("PHONE", "(415) 555-2671"),
    ("PHONE", "415.555.2671"),
    ("PHONE", "212-456-7890"),
    ("PHONE", "+1 (650) 253-0000"),
    ("PHONE", "+44 20 7946 0958"),
    ("PHONE", "+33 1 42 68 53 00"),
    ("PHONE", "+49 30 901820"),
    ("URL", "https://example.com/path?q=1&r=2#frag"),
    ("URL", "http://localhost:8000/api/v1/users/42"),
    ("URL", "www.example.org/profile/jane"),
    ("URL", "ftp://files.example.net/pub/report.pdf"),
    ("IP", "192.168.1.1"),
    ("IP", "8.8.8.8"),
    ("IP", "10.0.0.255"),
    ("IP", "2001:db8::ff00:42:8329"),
    ("IP", "2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
    ("IP", "fe80::1ff:fe23:4567:890a%eth0"),
    ("IP", "::ffff:192.0.2.128"),
    ("CARD", "4111 1111 1111 1111"),
    ("CARD", "4111111111111111"),
    ("CARD", "5500-0000-0000-0004"),
    ("CARD", "378282246310005"),
    ("CARD", "3782 822463 10005"),
    ("CARD", "6011 1111 1111 1117"),
    ("CARD", "2223003122003222"),
    ("SSN", "123-45-6789"),
    ("SSN", "536-90-4399"),
    ("IBAN", "GB82 WEST 1234 5698 7654 32"),
    ("IBAN", "DE89370400440532013000"),
    ("IBAN", "DE89 3704 0044 0532 0130 00"),
    ("IBAN", "FR14 2004 1010 0505 0001 3M02 606"),
]

# Text that looks a little like personal data and must come through unchanged.
NEAR_MISSES = [
    # versions
    "Upgrade from 1.2.3 to 1.2.4 first.",
    "Windows build v10.0.19041 is affected.",
    "It needs Python 3.11.7 or later.",
    "Ship version 2.4.1.0 on Monday, then release 3.0.0.1.",
    "The semver range ^4.17.21 is fine.",
    # dates and times
    "The deadline is 2024-03-15.",
    "Le rendez-vous est le 15/03/2024.",
    "We met on March 15, 2024 at noon.",
    "The job ran at 12:30:45 and again at 23:59:59.999.",
    "Logged 2024-03-15T12:30:45Z by the scheduler.",
    "It happened on 2024-03-15 12:30:45 local time.",
    "Due 03/15/2024 10:30 AM.",
    # prices and amounts
    "The laptop costs $1,299.99 and the case €45.50.",
    "A population of 1 000 000 people, or 1 000 000 000 by 2100.",
    "Revenue reached 3,141,592,653 dollars.",
    # years, counts, short runs
    "Between 1999 and 2024, 42 people joined 7 teams.",
    "Rooms 101, 202 and 303; codes 12 34 56.",
    "Order 12345 shipped in 3 boxes.",
    # numbers that fail their checksums or ranges
    "ISBN 978-3-16-148410-0 and 9783161484100 are the same book.",
    "Order number 1234567812345678 is on the invoice.",
    "Card 4111 1111 1111 1112 was declined.",
    "Ref 4532015112830367 is not a card.",
    # passes Luhn, but no card network issues numbers starting with 1
    "Order number 1234567812345670 is on the invoice.",
    "IBAN GB82 WEST 1234 5698 7654 33 has a bad checksum.",
    "DE89370400440532013001 is mistyped.",
    "SSNs 000-12-3456, 666-12-3456, 912-34-5678, 123-00-4567 and 123-45-0000 are never issued.",
    # digit runs that are not phone-shaped: bare, and named as something else
    "Tracking id 1234567890.",
    # maths, decimals, coordinates
    "Note that 3*4=12 and 2^10 = 1024.",
    "Pi is 3.14159 and e is 2.718281828459045.",
    "10/3 = 3.3333333333 roughly.",
    "The office is at 37.7749, -122.4194 or (51.5074, -0.1278).",
    "Paris: 48.8566° N, 2.3522° E.",
    # not IP addresses
    "The sequence 1.2.3.4.5 continues.",
    "999.1.1.1 and 256.1.1.1 are out of range.",
    "Use std::vector and Foo::bar in C++.",
    "MAC 00:1A:2B:3C:4D:5E belongs to a switch.",
    # not emails or URLs
    "Ping user@ when ready, or @jane on chat.",
    "Open report.pdf and data.csv, e.g. in Excel, i.e. a spreadsheet.",
    "Node.js and Vue.js are frameworks; see example.com for details.",
    "Decorate it with @property in Python.",
]


def embed(value: str) -> str:
    return f"Sure, my details are {value}, thanks."


@pytest.mark.parametrize(("kind", "value"), POSITIVES)
def test_each_kind_is_replaced_by_its_placeholder(kind: str, value: str) -> None:
    counts: Counter[str] = Counter()
    out = scrub_text(embed(value), counts)
    assert out == embed(PLACEHOLDERS[kind])
    assert counts == Counter({kind: 1})


def test_positive_fixtures_are_valid_by_the_libraries_we_trust() -> None:
    """The positives are real by the validators' own account, so the tests above test us."""
    for kind, value in POSITIVES:
        if kind == "CARD":
            assert luhn.is_valid(value.replace(" ", "").replace("-", "")), value
        elif kind == "IBAN":
            assert iban.is_valid(value), value
        elif kind == "PHONE":
            assert phonenumbers.is_valid_number(phonenumbers.parse(value, "US")), value


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_near_misses_are_left_alone(text: str) -> None:
    counts: Counter[str] = Counter()
    assert scrub_text(text, counts) == text
    assert not counts


def test_near_miss_checksums_really_fail() -> None:
    for number in ("4111111111111112", "4532015112830367", "1234567812345678"):
        assert not luhn.is_valid(number)
    assert not iban.is_valid("GB82 WEST 1234 5698 7654 33")
    assert not iban.is_valid("DE89370400440532013001")
    assert not phonenumbers.is_valid_number(phonenumbers.parse("(555) 123-4567", "US"))


def test_surrounding_punctuation_is_kept() -> None:
    assert scrub_text("Mail <jane@example.com>.") == "Mail <[EMAIL]>."
    assert scrub_text("(see https://example.com/a_(b))") == "(see [URL])"
    assert scrub_text("Link: [docs](https://example.com/docs).") == "Link: [docs]([URL])."
    assert scrub_text("Server 10.0.0.1.") == "Server [IP]."
    assert scrub_text("IP:2001:db8::1, addr=fe80::1") == "IP:[IP], addr=[IP]"
    assert scrub_text("http://[2001:db8::1]:8080/ or [2001:db8::1]:8080") == "[URL] or [[IP]]:8080"
    assert scrub_text("Card 4111 1111 1111 1111 exp 12/25") == "Card [CARD] exp 12/25"
    assert scrub_text("Card 4111 1111 1111 1111 12/25") == "Card [CARD] 12/25"


def test_url_wins_over_what_it_contains_and_email_over_a_www_domain() -> None:
    counts: Counter[str] = Counter()
    assert scrub_text("http://192.168.1.1:8080/admin", counts) == "[URL]"
    assert scrub_text("https://www.example.com/u/4155552671", counts) == "[URL]"
    assert scrub_text("write to bob@www.example.com", counts) == "write to [EMAIL]"
    assert counts == Counter({"URL": 2, "EMAIL": 1})


def test_phone_inside_a_longer_digit_run_is_found() -> None:
    assert scrub_text("Born 1985 415-555-2671 is my cell") == "Born 1985 [PHONE] is my cell"
    assert scrub_text("Call 415-555-2671 2 times") == "Call [PHONE] 2 times"


def test_counts_add_up_across_kinds_and_calls() -> None:
    text = (
        "Reach jane@example.com or bob@example.org, call +44 20 7946 0958 or 212-456-7890, "
        "pay 4111 1111 1111 1111 or GB82 WEST 1234 5698 7654 32, SSN 123-45-6789, "
        "host 192.168.0.10 or 2001:db8::1:2, docs at https://example.com/x."
    )
    counts: Counter[str] = Counter({"EMAIL": 1})  # counts are added, not reset
    out = scrub_text(text, counts)
    expected = {"EMAIL": 3, "PHONE": 2, "CARD": 1, "IBAN": 1, "SSN": 1, "IP": 2, "URL": 1}
    assert counts == Counter(expected)
    for kind, n in expected.items():
        assert out.count(PLACEHOLDERS[kind]) == n - (1 if kind == "EMAIL" else 0)
    assert not any(ch.isdigit() for ch in out) and "@" not in out


def test_counts_argument_is_optional() -> None:
    assert scrub_text("jane@example.com") == "[EMAIL]"


def test_placeholders_and_type_names_are_exported() -> None:
    assert set(PII_TYPES) == {
        "EMAIL", "PHONE", "URL", "IP", "CARD", "SSN", "IBAN", "NAME", "ADDRESS"}
    assert all(PLACEHOLDERS[k] == f"[{k}]" for k in PII_TYPES)


def test_placeholders_are_not_scrubbed_again() -> None:
    text = " ".join(PLACEHOLDERS.values())
    counts: Counter[str] = Counter()
    assert scrub_text(text, counts) == text and not counts


def test_everything_at_once_is_idempotent() -> None:
    text = " and ".join(value for _, value in POSITIVES) + "; " + " ".join(NEAR_MISSES)
    once = scrub_text(text)
    counts: Counter[str] = Counter()
    assert scrub_text(once, counts) == once and not counts
    for _, value in POSITIVES:
        assert value not in once


FRAGMENTS = [value for _, value in POSITIVES] + NEAR_MISSES + list(PLACEHOLDERS.values())
JOINERS = [" ", ", ", "\n", ". ", " (", ") ", "-", "/", ":", "@", "", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6), st.lists(
    st.sampled_from(JOINERS), min_size=6, max_size=6))
def test_idempotent_on_glued_fragments(parts: list[str], joiners: list[str]) -> None:
    text = "".join(p + j for p, j in zip(parts, joiners, strict=False))
    once = scrub_text(text)
    assert scrub_text(once) == once


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(POSITIVES), min_size=1, max_size=5),
       st.sampled_from([", ", "\n", " and ", "; "]))
def test_separated_positives_all_disappear(items: list[tuple[str, str]], sep: str) -> None:
    counts: Counter[str] = Counter()
    out = scrub_text(sep.join(value for _, value in items), counts)
    assert out == sep.join(PLACEHOLDERS[kind] for kind, _ in items)
    assert counts == Counter(kind for kind, _ in items)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_handled_and_idempotent(text: str) -> None:
    once = scrub_text(text)
    assert scrub_text(once) == once


def test_scrub_value_walks_metadata_without_changing_the_input() -> None:
    meta = {
        "owner": "jane@example.com",
        "tags": ["call 212-456-7890", "fine", 3, None, True],
        "nested": {"ip": "10.1.2.3", "pair": ("www.example.com", 1.5)},
        "bob@example.com": "key holds an address",
        "phone_as_number": 4155552671,
        "timestamp": 1712345678,
    }
    counts: Counter[str] = Counter()
    out = scrub_value(meta, counts)
    assert out == {
        "owner": "[EMAIL]",
        "tags": ["call [PHONE]", "fine", 3, None, True],
        "nested": {"ip": "[IP]", "pair": ("[URL]", 1.5)},
        "[EMAIL]": "key holds an address",
        "phone_as_number": "[PHONE]",  # a number holding personal data becomes its placeholder
        "timestamp": 1712345678,  # not a valid number anywhere it could be read as one
    }
    assert counts == Counter({"EMAIL": 2, "PHONE": 2, "IP": 1, "URL": 1})
    assert meta["owner"] == "jane@example.com" and meta["tags"][0] == "call 212-456-7890"


def test_scrub_value_passes_scalars_through() -> None:
    for value in (None, True, 0, 2024, 3.14, b"jane@example.com"):
        assert scrub_value(value) == value
    assert scrub_value("ip 8.8.8.8") == "ip [IP]"


def test_ordinary_text_is_cheap() -> None:
    """A loose guard against a slow pattern creeping in (the benchmark has the real figures):
    1.2 kB of English with digits but no personal data must scrub in well under 1 ms."""
    text = (
        "In 2023 the team shipped version 3.11.7, and by March 15, 2024 most users had upgraded. "
        "That's a thoughtful question, and it's worth slowing down to consider what you want. "
        "Step 1: preheat the oven to 180 degrees. Step 2: bake for 25 to 30 minutes. "
    ) * 5
    text = text[:1200]
    scrub_text(text)
    n = 200
    start = time.perf_counter()
    for _ in range(n):
        scrub_text(text)
    per_call = (time.perf_counter() - start) / n
    assert per_call < 1e-3


# --- issue 20: what an attacker's trial found missing -------------------------------------------

ISSUE_20 = [
    # names after a cue, in nine languages
    ("My name is Claes Skoog.", "My name is [NAME]."),
    ("Hi Anna,\nthanks for the update.", "Hi [NAME],\nthanks for the update."),
    ("Thanks again!\n\nBest,\nJohn Smith", "Thanks again!\n\nBest,\n[NAME]"),
    ("Regards,\nMaria van der Berg", "Regards,\n[NAME]"),
    ("Dear Mr. Smith,\nplease call.", "Dear Mr. [NAME],\nplease call."),
    ("My wife Anna disagrees.", "My wife [NAME] disagrees."),
    ("Je m'appelle Élodie Petit.", "Je m'appelle [NAME]."),
    ("Ich heiße Jürgen.", "Ich heiße [NAME]."),
    ("Sehr geehrte Frau Müller,", "Sehr geehrte Frau [NAME],"),
    ("Estimado Sr. García:", "Estimado Sr. [NAME]:"),
    ("Mi chiamo Giulia Rossi.", "Mi chiamo [NAME]."),
    ("Meu nome é João Silva.", "Meu nome é [NAME]."),
    ("Ik heet Daan de Vries.", "Ik heet [NAME]."),
    ("Jag heter Claes Skoog.", "Jag heter [NAME]."),
    ("Nazywam się Łukasz Żak.", "Nazywam się [NAME]."),
    ("Mit freundlichen Grüßen\nHans Meier", "Mit freundlichen Grüßen\n[NAME]"),
    ("Cordialement,\nJean Dupont", "Cordialement,\n[NAME]"),
    # street addresses, PO boxes, postcodes with their city
    ("I live at 221B Baker Street.", "I live at [ADDRESS]."),
    ("Hauptstraße 5, 10115 Berlin", "[ADDRESS]"),
    ("12, rue de la Paix 75002 Paris", "[ADDRESS]"),
    ("Calle Mayor 5, 28013 Madrid", "[ADDRESS]"),
    ("abito in via Roma 10", "abito in [ADDRESS]"),
    ("Rua das Flores, 25", "[ADDRESS]"),
    ("Kerkstraat 12, 1012 AB Amsterdam", "[ADDRESS]"),
    ("Storgatan 77, 111 22 Stockholm", "[ADDRESS]"),
    ("ul. Nowy Świat 15/3, 00-950 Warszawa", "[ADDRESS]"),
    ("P.O. Box 123", "[ADDRESS]"),
    ("Postfach 1234", "[ADDRESS]"),
    ("SW1A 1AA London", "[ADDRESS]"),
    ("Springfield, IL 62704", "[ADDRESS]"),
    # emails written to dodge filters, web addresses without a scheme
    ("name at example dot com", "[EMAIL]"),
    ("name(at)example.com", "[EMAIL]"),
    ("name [at] example [dot] com", "[EMAIL]"),
    ("write name @ example.com", "write [EMAIL]"),
    ("name＠example.com", "[EMAIL]"),
    ("see example.com/users/jdoe", "see [URL]"),
    ("linkedin.com/in/jane-doe-123", "[URL]"),
    ("www.x.org/a", "[URL]"),
    # SSNs: bare after or before a cue, and the well-known ones validators reject
    ("SSN 536904399", "SSN [SSN]"),
    ("536904399 is my SSN", "[SSN] is my SSN"),
    ("SSN: 078-05-1120", "SSN: [SSN]"),
    ("ssn 219-09-9999", "ssn [SSN]"),
    # phone numbers whole, cards never [PHONE]
    ("+353 48 1907 8668", "[PHONE]"),
    ("+358 40 1234 5678", "[PHONE]"),
    ("call 692 476 762", "call [PHONE]"),
    ("tel. 039 912 284", "tel. [PHONE]"),
    ("card 4111 1111 1111 1111 and 3782-822463-10005", "card [CARD] and [CARD]"),
]

ISSUE_20_NEAR_MISSES = [
    "RMA 7788990011", "order ID 4111111111111111", "invoice no 378282246310005",
    "Tracking number 9400111899223856928499.", "I'm happy to help.", "I'm going home.",
    "This is Python code.", "Hi all, the build is green.", "Hello World and welcome.",
    "Thanks, that fixed it.", "I work at example.com now.", "Visit example.com for details.",
    "Use Node.js/React and src/main.py.", "In 2024 Paris hosted the games.",
    "Revenue was 12500 Euro.", "Step 2 of 5 failed.", "Windows 11 Pro", "v1.2.3 on 2024-03-15",
    "ISBN 978-3-16-148410-0 costs $12.99.",
]


@pytest.mark.parametrize(("text", "expected"), ISSUE_20)
def test_issue_20_items_are_replaced_whole(text: str, expected: str) -> None:
    assert scrub_text(text) == expected
    assert scrub_text(expected) == expected  # and scrubbing again changes nothing


@pytest.mark.parametrize("text", ISSUE_20_NEAR_MISSES)
def test_issue_20_near_misses_stay(text: str) -> None:
    assert scrub_text(text) == text


def test_names_need_a_cue_and_a_capital() -> None:
    """What is not promised: a name without a cue, or written in lower case, stays."""
    assert scrub_text("Claes Skoog called.") == "Claes Skoog called."
    assert scrub_text("my name is claes") == "my name is claes"
    assert scrub_text("Baker Street is long.") == "Baker Street is long."  # no number
