"""Names and street addresses in text, found offline by the words around them.

A name is found only where a cue introduces it, in English, German, French, Spanish, Italian,
Portuguese, Dutch, Swedish and Polish: a self-introduction ("my name is", "je m'appelle",
"ich heiße", "nazywam się"), a salutation at the start of a line or sentence ("Dear", "Hi",
"Sehr geehrte Frau", "Estimado Sr."), a sign-off ("Best,", "Regards,", "Cordialement",
"Mit freundlichen Grüßen") followed by the name, a title (Mr, Dr, Frau, Mme, Sra., Pani ...) or a
relation ("my wife", "mein Sohn", "ma fille", "mi jefe"). What follows the cue is a name when it
is one to three capitalised words (with particles such as "van der", "de la") and not a word of
`_NOT_NAMES` ("I'm Happy", "this is Python", "Hi all"). Names without a cue are not found: no
word list or model is consulted, so "Claes Skoog called" stays as it is.

An address is a street word and a house number in those languages ("221B Baker Street",
"Hauptstraße 5", "12, rue de la Paix", "Calle Mayor 5", "ul. Długa 15/3", "Storgatan 77"), a
post-office box ("P.O. Box 123", "Postfach 1234", "BP 42"), or a postcode with its city
("75008 Paris", "SW1A 1AA London", "00-950 Warszawa", "Springfield, IL 62704"). Parts of one
address that follow each other ("Hauptstraße 5, 10115 Berlin") become one placeholder. A
street without a street word or a number, or a city alone, is not found.

Speed: the patterns start with a character class or a literal and read a bounded window; the
address patterns run only on text with a digit (every address found has one), and the checks
that need Python (stop words, the start of a sentence) run on matches only.
"""

from __future__ import annotations

import codecs
import re
from typing import Final

__all__ = ["find_addresses", "find_names", "may_hold_names", "shape"]

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# ---------------------------------------------------------------------------------------------
# Names.

# Capitalised words that follow a cue and are not names: feelings and states after "I'm",
# languages and nationalities, greetings' other objects ("Hi all"), products ("this is Python").
_NOT_NAMES: Final = _words("""
a an the this that these those it its i we you he she they me my our your here there not no
yes ok okay so just also very really sorry happy glad sure fine good great well back new
going trying looking writing calling working hoping afraid interested ready done home all
everyone everybody folks guys team there world friends friend sir madam madame sirs colleagues
customer customers support service user users admin sales hr it is was will would can could
english american british german french spanish italian portuguese dutch swedish polish
european chinese japanese korean indian canadian australian mexican brazilian irish scottish
russian ukrainian african asian muslim christian jewish catholic deutsch deutscher deutsche
français française española español italiano italiana polak polka svensk holländer
monday tuesday wednesday thursday friday saturday sunday january february march april may
june july august september october november december christmas easter
python java javascript google microsoft apple amazon windows linux chatgpt claude excel github
god lord mum mom dad mama papa grandma grandpa chef boss doctor
from in on at of and or but if for to with by via as thanks thank regards best cheers
bonjour hallo hola ciao hello hi hey dear monsieur herr frau señor señora signor signora
mr mrs ms miss mx dr prof herrn fräulein mme mlle madame mademoiselle sr sra srta don doña sig
signorina dott ing avv senhor senhora dona dhr mevr mw meneer mevrouw fru pan pani panie panna
""")

_TOKEN: Final = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
_PARTICLES: Final = _words("van von de der den da di del della dos das du le la ten ter zu af")
_GAP: Final = re.compile(r"[ \u00a0]{1,2}")

# Strong cues: what follows is a name when it is capitalised. Weak cues ("I'm", "je suis",
# "soy") also introduce states and origins; their name must not be a word of `_NOT_NAMES`.
_SELF: Final = (
    r"my name is|my name's|name is|call me|my name:"
    r"|ich heiße|ich heisse|mein name ist|ich bin|je m'appelle|je m’appelle|mon nom est|je suis"
    r"|moi c'est|me llamo|mi nombre es|soy|mi chiamo|il mio nome è|sono|meu nome é"
    r"|o meu nome é|me chamo|chamo-me|sou|ik heet|mijn naam is|ik ben|jag heter|mitt namn är"
    r"|jag är|nazywam się|mam na imię|moje imię to|jestem|i'm|i’m|i am|this is|it's|c'est"
)
_POSSESSIVE: Final = (
    r"my|mein|meine|meinem|meinen|meiner|ma|mon|mi|mia|mio|il mio|la mia|minha|meu|mijn|min"
    r"|mitt|moja|mój|moją|mojej|mojego"
)
_RELATION: Final = (
    r"wife|husband|son|daughter|boss|brother|sister|mother|father|mom|mum|dad|partner|friend"
    r"|girlfriend|boyfriend|colleague|manager|neighbou?r|cousin|uncle|aunt|fianc[ée]e?|child"
    r"|kid|grandson|granddaughter|grandmother|grandfather|landlord|tenant|roommate|ex"
    r"|frau|mann|sohn|tochter|chef|chefin|bruder|schwester|mutter|vater|freundin|freund"
    r"|kollegin|kollege|nachbar|nachbarin|femme|mari|fils|fille|patron|patronne|frère|sœur"
    r"|mère|père|ami|amie|collègue|copain|copine|esposa|esposo|mujer|marido|hijo|hija|jefe"
    r"|jefa|hermano|hermana|madre|padre|amigo|amiga|novio|novia|moglie|figlio|figlia|capo"
    r"|fratello|sorella|amico|amica|filho|filha|chefe|irmão|irmã|mãe|pai|vrouw|man|zoon"
    r"|dochter|baas|broer|zus|moeder|vader|vriend|vriendin|collega|fru|dotter|bror|syster"
    r"|mamma|pappa|vän|kollega|sambo|pojkvän|flickvän|żona|mąż|syn|córka|szef|szefowa|brat"
    r"|siostra|mama|tata|przyjaciel|przyjaciółka|kolega|koleżanka"
)
# Titles are matched as written (capitalised): "frau" and "don" are also ordinary words.
_TITLE: Final = (
    r"Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Herr|Herrn|Frau|Fräulein|Mme|Mlle|Monsieur|Madame"
    r"|Mademoiselle|Sr|Sra|Srta|Señor|Señora|Señorita|Don|Doña|Sig|Sig\.ra|Signor|Signora"
    r"|Signorina|Dott|Dott\.ssa|Ing|Avv|Senhor|Senhora|Dona|Dhr|Mevr|Mw|Meneer|Mevrouw|Fru"
    r"|Pan|Pani|Panie|Panna"
)
# A salutation opens a letter or a message: at the start of a line or sentence.
_SALUTE: Final = (
    r"dear|dearest|liebe|lieber|sehr geehrte|sehr geehrter|cher|chère|estimado|estimada"
    r"|querido|querida|caro|cara|carissimo|carissima|gentile|gentilissimo|gentilissima"
    r"|prezado|prezada|beste|geachte|kära|käre|drogi|droga|szanowny|szanowna"
)
# A greeting also starts a line; its name is followed by a comma, '!', ':' or the line's end.
_GREET: Final = (
    r"hi|hello|hey|hallo|moin|servus|bonjour|bonsoir|salut|coucou|hola|buenos días|buenas"
    r"|ciao|salve|buongiorno|olá|ola|oi|bom dia|boa tarde|hoi|goedemorgen|hej|hejsan|tjena"
    r"|cześć|witaj|witam|dzień dobry|good morning|good afternoon|good evening|morning"
)
# A sign-off ends a message: the name after it, on the same line or the next.
_SIGN: Final = (
    r"best|best regards|best wishes|kind regards|warm regards|regards|many thanks|thanks"
    r"|thank you|cheers|sincerely|yours sincerely|yours truly|yours|love|all the best|take care"
    r"|mit freundlichen grüßen|mit freundlichen grüssen|freundliche grüße|viele grüße|beste grüße"
    r"|liebe grüße|lg|mfg|grüße|gruß|cordialement|bien cordialement|bien à vous|amicalement"
    r"|bisous|merci|salutations|saludos|un saludo|atentamente|un abrazo|gracias|cordiali saluti"
    r"|distinti saluti|saluti|un saluto|grazie|atenciosamente|abraços|cumprimentos|obrigado"
    r"|obrigada|met vriendelijke groet|vriendelijke groeten|groeten|groetjes|bedankt"
    r"|med vänliga hälsningar|vänliga hälsningar|hälsningar|mvh|tack|z poważaniem|pozdrawiam"
    r"|pozdrowienia|dziękuję"
)


def _phrases(alternatives: str) -> frozenset[str]:
    return frozenset(alternatives.lower().split("|"))


_CUES: Final = {
    "self": _phrases(_SELF),
    "rel": frozenset(f"{p} {r}" for p in _phrases(_POSSESSIVE) for r in _phrases(_RELATION)),
    "salute": _phrases(_SALUTE),
    "greet": _phrases(_GREET),
    "sign": _phrases(_SIGN),
}
_TITLES: Final = frozenset(_TITLE.replace("\\", "").split("|"))
_CUE_WORDS: Final = 4  # the longest cue ("il mio nome è")
# The last word of every cue: a word not among them ends none.
_CUE_ENDINGS: Final = frozenset(
    phrase.rsplit(" ", 1)[-1] for phrases in _CUES.values() for phrase in phrases
)
_CUE_WINDOW: Final = 64
# One byte a character: capitals "A", small letters "a", digits "0" (Latin-1; see `shape`).
_SHAPE: Final = bytes.maketrans(
    bytes(range(ord("A"), ord("Z") + 1)) + bytes(c for c in range(0xC0, 0xDF) if c != 0xD7)
    + bytes(range(ord("a"), ord("z") + 1)) + bytes(c for c in range(0xDF, 0x100) if c != 0xF7)
    + b"0123456789",
    b"A" * (26 + 30) + b"a" * (26 + 32) + b"0" * 10,
)
# A capitalised word after a space, a newline or a bracket, not after a full stop unless a
# title's ("Dr. Smith"); found from a literal first byte, which `re` searches for in C.
_TITLE_DOT: Final = (
    rb"|(?<=[ \n(]Aa\. Aa)|(?<=[ \n(]Aaa\. Aa)|(?<=[ \n(]Aaaa\. Aa)|(?<=[ \n(]Aaaaa\. Aa)"
)
# The two bytes "Aa" first: `re` then searches for them in C, skipping placeholders' "AAAA".
_CAPITALS: Final = re.compile(rb"Aa(?:(?<=[ \n(\t]Aa)(?<![.!?] Aa)" + _TITLE_DOT + rb")")
# Capitals outside Latin-1 (Ł, Ś, Ż) are b"\x01" in the shape, as are small letters outside
# Latin-1: read only when the shape has one, and checked by `_capitalised`.
_OTHER_CAPITALS: Final = re.compile(rb"\x01(?<=[ \n(\t]\x01)(?<![.!?] \x01)a")


def _other_script(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeEncodeError)
    return "\x01" * (error.end - error.start), error.end


codecs.register_error("annotator.shape", _other_script)


def shape(text: str) -> bytes:
    """One byte a character of `text`: capitals b"A", small letters b"a", digits b"0",
    characters outside Latin-1 (Ł, ś, 中) b"\\x01", anything else itself."""
    return text.encode("latin-1", "annotator.shape").translate(_SHAPE)


def may_hold_names(shaped: bytes) -> bool:
    """Whether the text of this shape has a capitalised word a cue may introduce: a search of
    the shape, so that text without one skips `find_names`."""
    return _CAPITALS.search(shaped) is not None or shaped.find(b"\x01") >= 0


def _capitals(shaped: bytes) -> list[int]:
    """Where capitalised words that may be names start, in order."""
    found = [m.start() for m in _CAPITALS.finditer(shaped)]
    if shaped.find(b"\x01") >= 0:
        found = sorted(found + [m.start() for m in _OTHER_CAPITALS.finditer(shaped)])
    return found


def _capitalised(token: str) -> bool:
    return len(token) > 1 and token[0].isupper() and not token.isupper()


def _name_end(text: str, at: int, strict: bool) -> int:
    """End of the name of one to three capitalised words starting at `at`, or -1."""
    end = -1
    words = 0
    pos = at
    while words < 3:
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        token = m.group()
        if _capitalised(token):
            if token.lower() in _NOT_NAMES and (words == 0 or strict):
                break
            end, words = m.end(), words + 1
        elif token.lower() not in _PARTICLES:
            break
        gap = _GAP.match(text, m.end())
        if gap is None:
            break
        pos = gap.end()
    return end


def _cue(text: str, at: int, sentence: bool) -> str | None:
    """The kind of cue that ends right before `at` ("self", "rel", "salute", "greet", "sign",
    "title"), read from the last words before it, or None. After a full stop only a title
    ("Dr. Smith") counts: anything else there is a sentence's first word."""
    before = text[max(0, at - _CUE_WINDOW) : at]
    tail = before.rsplit(None, 1)  # the last word alone: the whole window only for a cue
    if not tail:
        return None
    last = tail[-1]
    if last.rstrip(".") in _TITLES:
        return "title"
    if sentence or last.lower().rstrip(",.:!") not in _CUE_ENDINGS:
        return None  # most capitalised words follow a word that ends no cue
    words = before.split()
    newline = "\n" in before[len(before.rstrip()) :]
    for k in range(1, min(_CUE_WORDS, len(words)) + 1):
        phrase = " ".join(words[-k:]).lower().rstrip(",.:!")
        for kind, phrases in _CUES.items():
            if phrase in phrases and (kind == "sign" or not newline):
                if kind in ("salute", "greet", "sign") and not _opens(before, k):
                    continue
                return kind
    return None


def _opens(before: str, k: int) -> bool:
    """Whether the last `k` words of `before` start a line or a sentence."""
    head = before
    for _ in range(k):
        head = head.rstrip()
        head = head[: max(head.rfind(" "), head.rfind("\n"), head.rfind("\t")) + 1]
    head = head.rstrip(" \t\u00a0")
    return not head or head[-1] in "\n.!?:;>\"'(" or head.endswith("--")


def find_names(text: str, shaped: bytes | None = None) -> list[tuple[int, int]]:
    """Spans of names introduced by a cue (see the module docstring). Only capitalised words
    not opening a sentence are read, and the cue is matched backwards from each, so text
    without such words costs a translation and a few substring searches."""
    shaped = shape(text) if shaped is None else shaped
    spans: list[tuple[int, int]] = []
    done = 0
    for at in _capitals(shaped):
        if at < done:
            continue  # inside a name already found
        sentence = at >= 2 and shaped[at - 1] == 32 and text[at - 2] in ".!?"
        kind = _cue(text, at, sentence)
        if kind is None:
            continue
        end = _name_end(text, at, strict=kind in ("self", "greet"))
        if end < 0:
            continue
        if kind == "greet" and not (end == len(text) or text[end] in ",!:\n\r"):
            continue  # "Hello World and welcome": a name ends the greeting
        spans.append((at, end))
        done = end
    return spans


# ---------------------------------------------------------------------------------------------
# Addresses.

_UPPER: Final = r"A-ZÀ-ÖØ-ÞĀĂĄĆČĎĐĒĖĘĚĞĪĮİĹĽŁŃŇŌŐŒŔŘŚŞŠŢŤŪŮŰŲŹŻŽ"
_CAP: Final = rf"[{_UPPER}][\w'’\-]*\.?"  # a capitalised word (St., Jean-Jaurès, O'Connell)
_CAP_END: Final = rf"[{_UPPER}][\w'’\-]*"  # the last word: a full stop after it ends a sentence
_NUMBER: Final = r"[0-9]{1,5}[A-Za-z]?(?:[ ]?[/\-][ ]?[0-9]{1,4}[A-Za-z]?)?"
# Number first (English): 221B Baker Street, 1600 Pennsylvania Avenue NW, 17 Heather Grove.
_EN_STREET: Final = (
    r"Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|Boulevard|Blvd|Court|Ct|Place|Pl|Way"
    r"|Terrace|Close|Crescent|Square|Sq|Parkway|Pkwy|Highway|Hwy|Alley|Row|Walk|Grove|Gardens"
    r"|Hill|Mews|Park|Circle|Cir|Trail|Path|Green|Rise|View|Vale|Ridge|Heights|Meadows|Manor"
    r"|Mountains?|Pines|Hollow|Crossing|Creek|Point|Loop|Pike|Plaza|Wharf|Quay|Parade|Esplanade"
    r"|Embankment|Gate|Yard|Wynd|Brae|Ville|Vista|Wade|End|Burgs?|Estates?|Springs?|Fields?"
    r"|Forest|Glen|Harbor|Harbour|Haven|Lakes?|Landing|Mills?|Orchard|Knoll|Shores?|Valley"
)
# Number first, street word lowercase or capitalised (French): 12, rue de la Paix; 8 bd Haussmann.
_FR_STREET: Final = (
    r"rue|avenue|av\.|boulevard|bd|place|impasse|allée|chemin|quai|cours|route|passage|square"
    r"|voie|sentier|faubourg|rond-point"
)
# Street word first, number after (Spanish, Italian, Portuguese, Polish, French "BP").
_WORD_FIRST: Final = (
    r"calle|c/|avenida|avda\.?|paseo|plaza|camino|carrera|carretera|ronda|travesía|callejón"
    r"|cuesta|glorieta|pasaje|urbanización|circuito|calzada|privada|andador|prolongación"
    r"|via|viale|piazza|piazzale|corso|largo|vicolo|strada|contrada|rotonda|borgo|lungomare"
    r"|rua|travessa|praça|alameda|estrada|avenida|rodovia|ladeira|beco"
    r"|ulica|ul\.|aleja|al\.|plac|pl\.|osiedle|os\.|rynek|skwer"
)
_PARTICLE_WORDS: Final = (
    r"de|del|de la|de las|de los|la|las|los|el|di|del|della|delle|dei|degli|da|do|dos|das"
    r"|d'|l'|du|des|le|van|von|der|den|y|e|al|ai|alla|in|im|am|an"
)
_SUFFIXES: Final = (
    r"straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|chaussee|pfad|steig|markt|berg"
    r"|straat|laan|plein|gracht|kade|singel|dijk|hof|steeg|pad|boulevard"
    r"|gatan|vägen|väg|gata|torget|torg|gränd|backe|stigen|gade|vej|allé|stræde"
)
_SEPARATE: Final = r"Straße|Strasse|Str\.|Weg|Platz|Allee|Gasse|Ring|Damm|Ufer|Allé|Straat|Laan"
_UNIT: Final = (
    r"(?:,?[ ]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Floor|Fl\.?|#|Interior|Int\.?|Piso"
    r"|Puerta|App\.?|Wohnung|Étage|lok\.|m\.)[ ]?[0-9]{1,5}[A-Za-z]?)?"
)
_STATES: Final = (
    r"AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV"
    r"|NH|NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR"
)
_CITY: Final = rf"[{_UPPER}][^\W\d_]+(?:[ \-](?:(?:{_PARTICLE_WORDS}|sur|upon|am|an|im)[ \-])?"
_CITY_TAIL: Final = rf"[{_UPPER}][^\W\d_]+){{0,2}}"
_ADDRESS: Final = re.compile(
    # 1600 Pennsylvania Avenue NW, 221B Baker Street, 17066 Heather Grove Apt. 915
    rf"(?P<en>[0-9](?<![\w.,$€£\-/][0-9])[0-9]{{0,4}}[A-Za-z]?(?:[/\-][0-9]{{1,4}})?,?[ ]+"
    rf"(?:{_CAP}[ ]+){{1,3}}(?:{_EN_STREET})\b(?:[ ](?:NW|NE|SW|SE|N|S|E|W)\b)?{_UNIT})"
    # 12, rue de la Paix; 214, avenue Charlotte Gilles; 8 bis boulevard Haussmann
    rf"|(?P<fr>[0-9](?<![\w.,$€£\-/][0-9])[0-9]{{0,3}}[A-Za-z]?(?:[ ]?(?:bis|ter))?,?[ ]+"
    rf"(?i:{_FR_STREET})[ ]+(?:(?:{_PARTICLE_WORDS})[ ]?)*{_CAP_END}"
    rf"(?:[ ]+(?:(?:{_PARTICLE_WORDS})[ ]?)*{_CAP_END}){{0,3}})"
    # Calle Mayor 5; Via Roma, 10; Rua das Flores, 25; ul. Nowy Świat 15/3
    rf"|(?P<first>\b(?i:{_WORD_FIRST})[ ]+(?:(?:{_PARTICLE_WORDS})[ ]?)*{_CAP}"
    rf"(?:[ ]+(?:(?:{_PARTICLE_WORDS})[ ]?)*{_CAP}){{0,3}},?[ ]+(?:n[º°o]\.?[ ]?)?"
    rf"{_NUMBER}(?![0-9])\b{_UNIT})"
    # Hauptstraße 5, Kerkstraat 12, Storgatan 77, Berliner Straße 12, Torve Allé 691
    rf"|(?P<compound>[{_UPPER}][\w\-]*?(?:{_SUFFIXES})(?:[ ]+(?:{_SEPARATE}))?"
    rf"[ ]+{_NUMBER}(?![0-9])\b{_UNIT})"
    rf"|(?P<separate>[{_UPPER}][\w\-]+[ ]+(?:{_SEPARATE})[ ]+{_NUMBER}(?![0-9])\b{_UNIT})"
    # P.O. Box 123, Postfach 12 34 56, BP 42, Apartado de correos 123
    rf"|(?P<box>\b(?i:p\.?[ ]?o\.?[ ]?box|post office box|postfach|boîte postale|b\.p\.|bp"
    rf"|apartado de correos|apartado|casella postale|caixa postal|postbus|skrytka pocztowa)"
    rf"[ ]*[0-9]{{1,6}}(?:[ ][0-9]{{2}}){{0,2}}(?![0-9/]|[.,][0-9]))"
    # SW1A 1AA (London); T4V 6Y4
    rf"|(?P<uk>\b[A-Z]{{1,2}}[0-9][A-Z0-9]?[ ][0-9][A-Z]{{2}}\b(?:[ ]+{_CITY}{_CITY_TAIL})?"
    rf"|\b[A-Z][0-9][A-Z][ ][0-9][A-Z][0-9]\b(?:[ ]+{_CITY}{_CITY_TAIL})?)"
    # 75008 Paris, 00-950 Warszawa, 1012 AB Amsterdam, 111 22 Stockholm, 4000-806 Porto
    rf"|(?P<postcode>[0-9](?<![\w.,$€£\-/+][0-9])(?:[0-9]{{4}}|[0-9]-[0-9]{{3}}"
    rf"|[0-9]{{3}}-[0-9]{{3}}|[0-9]{{4}}-[0-9]{{3}}|[0-9]{{3}}[ ]?[A-Z]{{2}}"
    rf"|[0-9]{{2}}[ ][0-9]{{2}})"
    rf"[ ]+(?P<city>{_CITY}{_CITY_TAIL}))"
    # Springfield, IL 62704
    rf"|(?P<us>\b[A-Z][a-z]+(?:[ ][A-Z][a-z]+){{0,2}},[ ](?:{_STATES})[ ][0-9]{{5}}"
    rf"(?:-[0-9]{{4}})?\b)"
)
# The same alternatives in two groups, each tried only where its hint says: a number first
# (English and French streets, postcodes) or a word first (the others, PO boxes).
_ALTERNATIVES: Final = dict(
    (part.split(">", 1)[0][4:], part) for part in re.split(r"\|(?=\(\?P<)", _ADDRESS.pattern)
)
_NUMBER_FIRST: Final = re.compile(
    "|".join(_ALTERNATIVES[k] for k in ("en", "fr", "postcode", "uk", "us"))
)
_WORD_FIRST_RE: Final = re.compile(
    "|".join(_ALTERNATIVES[k] for k in ("first", "compound", "separate", "box", "uk", "us"))
)
# Words after a five-digit number that make it an amount or a count, not a postcode.
_NOT_CITIES: Final = _words("""
euro euros dollar dollars pounds pound yen yuan francs franc kronor zloty złotych usd eur
people users members employees students visitors customers items units pieces copies words
pages steps rows lines files records points votes views likes years days hours minutes km
miles meters metres feet tons tonnes kg calories
""")
# A flat or suite written before the street: "Flat 17, 194a Robin Lane".
_UNIT_BEFORE: Final = re.compile(
    r"\b(?:Flat|Apartment|Apt\.?|Unit|Suite|Wohnung|Appartement)[ ][0-9]{1,4}[A-Za-z]?,?[ ]+\Z"
)
# What may stand between two parts of one address.
_JOIN: Final = re.compile(r"[ \t]*(?:,|\r?\n)?[ \t]*")


def _alternatives(pattern: str) -> tuple[str, ...]:
    """The words of an alternation of literals ("ul\\.|via"), as written in text."""
    return tuple(w.replace("\\.?", "").replace("\\.", ".").lower() for w in pattern.split("|"))


# What the words before a number must hold for the number to end an address.
_STREET_FIRST: Final = frozenset(_alternatives(_WORD_FIRST)) | frozenset(
    w.rstrip(".") for w in _alternatives(_WORD_FIRST)
) | _words("box postfach postale b.p. bp apartado correos postal postbus pocztowa")
_STREET_ENDINGS: Final = _alternatives(_SUFFIXES) + _alternatives(_SEPARATE)
# Capitalised words a number follows that name no street ("March 15", "Step 2", "In 2023").
_NOT_STREETS: Final = _words("""
in on at by for from to since until after before about around step steps stage phase part
chapter section page table figure item level room floor version build release update day week
month year season episode round class grade group team figure jan feb mar apr jun jul aug sep
sept oct nov dec january february march april may june july august september october november
december monday tuesday wednesday thursday friday saturday sunday windows python java ios
android iphone galaxy pixel macos ubuntu debian
""")
_FR_WORDS: Final = _alternatives(_FR_STREET)
_FR_SET: Final = frozenset(_FR_WORDS)
# Where in the shape (see `shape`) an address may be, each found from a literal "0" (a digit):
# a number before a capitalised word (221B Baker, 75008 Paris, 1012 AB), a postcode (SW1A 1AA,
# T4V 6Y4, "IL 62704"), a number before a small word (12 rue), a number after a word
# (Hauptstraße 5, Via Roma, 10, Postfach 12). The last two are checked in `_places`. A run of
# letters is taken whole ("{1,10}+": what follows it is a space, never a letter), so a failed
# hint is given up at once, not tried again with each shorter run.
_HINTS: Final = re.compile(
    rb"0(?:(?=[ ,Aa])(?:(?P<cap>[Aa]{0,2}+(?:,? [A\x01]a| AA ))"
    rb"|(?P<post>AA(?<= 0AA)|A0(?<=A 0A0))"
    rb"|(?P<small>[Aa]?,? (?:aaa )?a{1,10}+ (?:a{1,5}+ |a'){0,3}[A\x01]a))"
    rb"|(?P<zip>0000(?<=, AA 00000)))"
)
# A capitalised word before a number, from its literal first byte. (Every pattern here starts
# with one literal byte: an alternation at the top would make `re` try every position.)
_AFTER: Final = re.compile(rb"Aa*\.?,? 0")
_OTHER_AFTER: Final = re.compile(rb"\x01[a\x01]*\.?,? 0")
_US: Final = re.compile(
    rf"\b[A-Z][a-z]+(?:[ ][A-Z][a-z]+){{0,2}},[ ](?:{_STATES})[ ][0-9]{{5}}(?:-[0-9]{{4}})?\b"
)
_WORD_START: Final = re.compile(r"\S+")
_LOWER_BOX: Final = re.compile(r"(?i)\b(?:casella|caixa|apartado|bo[iî]te)[ ]")


def _token_start(text: str, at: int) -> int:
    """Start of the token (a house number, an outward postcode) holding `at`."""
    start = at
    while start > max(0, at - 8) and (text[start - 1].isalnum() or text[start - 1] in "/-"):
        start -= 1
    return start


def _places(text: str, shaped: bytes) -> list[tuple[int, re.Pattern[str]]]:
    """Places where an address may start, each with the patterns to try there, from the
    hints and cheap tests of the words."""
    starts: list[int] = []  # number first
    places: list[int] = []  # word first
    for hint in _HINTS.finditer(shaped):
        at = hint.start()
        kind = hint.lastgroup
        if kind == "cap":
            start = _token_start(text, at)
            starts.append(start)
            if start >= 2 and text[start - 1] == " " and text[start - 2].isalnum():
                starts.append(_token_start(text, start - 2))  # 111 22 Stockholm, SW1A 1AA
        elif kind == "zip":  # Springfield, IL 62704
            starts.extend(m.start() for m in _US.finditer(text, max(0, at - 40), at + 16))
        elif kind == "post":  # SW1A 1AA, T4V 6Y4
            starts.append(_token_start(text, _token_start(text, at) - 1))
        elif kind == "small":  # "12 rue", "8, avenue", "61B, boulevard", "157 bis rue"
            rest = text[at + 1 : at + 32]
            rest = (rest[1:] if rest[:1].isalpha() else rest).lstrip(", ")
            words = rest.lower().split(" ", 2)
            if words[0] in ("bis", "ter") and len(words) > 1:
                words = words[1:]
            if words[0] in _FR_SET:
                starts.append(_token_start(text, at))
    afters = list(_AFTER.finditer(shaped))
    if shaped.find(b"\x01") >= 0:
        afters += _OTHER_AFTER.finditer(shaped)
    street_first: bool | None = None  # whether any word of the text starts a street
    for hint in afters:
        # A street's name is capitalised (Roma, Hauptstraße, Długa, Postfach): a number after
        # a small word ("version 3", "to 30") is none, nor one after "March" or "Step".
        word, at = hint.start(), hint.end() - 1
        last = text[word : at - 1].rstrip(", ").lower()
        if last in _NOT_STREETS:
            continue
        if not last.endswith(_STREET_ENDINGS):
            # The words before the number must hold a word that starts a street: read once
            # for the whole text, as most text has none ("Chrome 120", "PR 12345").
            if street_first is None:
                street_first = not _STREET_FIRST.isdisjoint(
                    text.lower().replace(",", " ").split()
                )
            if not street_first:
                continue
        before = text[max(0, at - 60) : at]
        words = before.lower().replace(",", " ").split()[-6:]
        if words and (words[-1].endswith(_STREET_ENDINGS) or not _STREET_FIRST.isdisjoint(words)):
            base = max(0, at - 60)
            places.extend([m.start() + base for m in _WORD_START.finditer(before)][-6:])
    if "ostal" in text or "orreos" in text:  # Casella postale 12, Apartado de correos 12
        places.extend(m.start() for m in _LOWER_BOX.finditer(text))
    return [(at, _NUMBER_FIRST) for at in starts] + [(at, _WORD_FIRST_RE) for at in places]


def find_addresses(text: str, shaped: bytes | None = None) -> list[tuple[int, int]]:
    """Spans of street addresses, PO boxes and postcodes with their city (see the module
    docstring), neighbouring parts joined. `_ADDRESS` is tried only at the places `_places`
    names, so text with numbers but no address costs a search of its shape."""
    shaped = shape(text) if shaped is None else shaped
    places = _places(text, shaped)
    if not places:
        return []  # the common case, a number and no address: two searches of the shape
    found: list[tuple[int, int]] = []
    done = 0
    for at, pattern in sorted(set(places), key=lambda place: place[0]):
        if at < done:
            continue
        m = pattern.match(text, at)
        if m is None:
            continue
        if m.lastgroup == "postcode":
            first = m.group("city").split()[0].lower()
            if first in _NOT_CITIES or first in _NOT_NAMES:
                continue
        start = m.start()
        unit = _UNIT_BEFORE.search(text, max(0, start - 24), start)
        found.append((unit.start() if unit else start, m.end()))
        done = m.end()
    spans: list[tuple[int, int]] = []
    for start, end in found:
        if spans and _JOIN.fullmatch(text, spans[-1][1], start):
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((start, end))
    return spans
