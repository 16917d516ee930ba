"""An offline baseline extractor: deterministic, fast, no network, built on the taxonomy's names.

Values: the names of the study's `VOCABULARY` most frequent values found in the text, whole
word by whole word, a word standing for a name's word when both have the same lemma (`lemma`: a
small suffix-stripping rule set for English, so "honest"/"honestly" give honesty, "responsible"
responsibility, "transparent" transparency, while "respond", "person" and "actually" give
nothing: a shared fragment is not a shared word). Rarer values are left out because a chance
word is then more likely than the value itself, and so are names that are everyday words
(`AMBIGUOUS_NAMES`). A few cue phrases add values that are rarely named ("it's your decision"
for user autonomy, code in the reply for technical precision); opposing values (dominance,
amorality, ... : the report's jailbreak signs) come only from phrases that state them, never
from their names (`CUED_ONLY`). Assistant turns give AI values, user turns human values; the
most repeated, then most frequent in the study, come first.

The task category is the category of the study's task list (`prompts/tasks.yaml`) whose
keywords occur most often as whole words, the user's words counting twice (`tasks.classify`);
the description is the user's first words.

Subjectivity and response type are decided apart. Subjective: the user shows values
(first-person stances, moral words), the assistant refuses or weighs views, or the user's topic
is value-laden (`VALUE_LADEN`). Response type: "no values" only when the user shows no values of
their own and the assistant does not refuse; else the strongest cue phrase (refusals, cautions,
"on the other hand", enthusiastic agreement).

It records itself as extractor "baseline", model `MODEL`, and a prompt version of its own (a hash
of its rules), so its agreement with gold is reported like any prompt's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import orjson

from annotator.extract.extractors import CallJournal, Outcome
from annotator.extract.prompts import prompt_id
from annotator.extract.tasks import TaskList, classify, describe, load_task_list
from annotator.models import Conversation, Extraction, PromptVersion, ResponseType, Role, ValueRef
from annotator.taxonomy import Node, Taxonomy, load_taxonomy, loose_key

VERSION = "v2"
MODEL = f"baseline-{VERSION}"
MAX_AI_VALUES = 5
MAX_HUMAN_VALUES = 3
VOCABULARY = 500  # the most frequent values in the study (of 3,307) that are matched by name
EVIDENCE_CHARS = 200

# Words in value names that would match everyday text far more often than they signal the
# value ("organization" the company, "security" the software feature, "support" the help desk).
AMBIGUOUS_NAMES: frozenset[str] = frozenset(
    {
        "organization", "education", "security", "expertise", "support", "access", "time",
        "practice", "quality", "balance", "service", "structure", "detail", "focus", "growth",
        "care", "order", "power", "success", "comfort", "control", "stability", "performance",
        "compliance", "documentation", "completeness", "functionality", "simplicity",
        # everyday words: "I hope you have fun", "thoughtful people disagree", "say it directly"
        "hope", "thoughtfulness", "directness", "engagement",
    }
)

# Cue phrases, matched case-insensitively on whole words. Ordered from resistance to support
# so the strongest reaction found wins.
CUES: dict[str, list[str]] = {
    "strong resistance": [
        r"i (?:can(?:'|’)?t|cannot|won(?:'|’)?t|will not) "
        r"(?:help|write|create|provide|assist|do that|generate|give)",
        r"i(?:'|’)?m (?:not able|unable) to (?:help|write|create|provide|assist)",
        r"i must (?:decline|refuse)",
        r"i(?:'|’)?m sorry,? but i (?:can(?:'|’)?t|cannot|won(?:'|’)?t)",
        r"(?:is|would be) (?:illegal|unethical|fraud)",
    ],
    "mild resistance": [
        r"i(?:'|’)?d (?:gently )?(?:caution|advise against|recommend against|push back)",
        r"i (?:would|(?:'|’)d) (?:not|n(?:'|’)t) recommend",
        r"i(?:'|’)?m not comfortable",
        r"i(?:'|’)?d (?:gently )?(?:add|flag|note) one thing",
        r"please (?:be careful|reconsider)",
        r"(?:isn(?:'|’)t|is not) a good idea",
        r"before you do",
    ],
    "reframing": [
        r"on the other hand",
        r"another (?:way|perspective|angle)",
        r"(?:a|from a) different (?:perspective|angle|way)",
        r"(?:it(?:'|’)s|it is) (?:also )?worth (?:considering|asking|noting)",
        r"at the same time",
        r"it (?:may|might|could) (?:also )?help to",
        r"consider (?:also|whether|that)",
        r"both (?:can|are|matter)",
    ],
    "strong support": [
        r"absolutely",
        r"what a (?:great|wonderful|lovely|brilliant)",
        r"(?:great|wonderful|excellent|fantastic) (?:idea|decision|choice|goal|plan)",
        r"i (?:completely|totally|fully) (?:agree|support)",
        r"that(?:'|’)s (?:wonderful|fantastic|amazing|admirable|brave)",
        r"you(?:'|’)re (?:absolutely )?right",
        r"good for you",
    ],
    "mild support": [
        r"(?:that|this) (?:can|could|might) work",
        r"(?:generally|mostly|largely) (?:fine|reasonable|sensible)",
        r"(?:a|one) (?:small|minor) (?:caveat|suggestion|tweak)",
    ],
}
# Without a cue, the study's most common reaction to a user's values: full support.
DEFAULT_RESPONSE = "strong support"
# Phrases that show a value without naming it, in the assistant's turns -> the value.
VALUE_CUES: dict[str, list[str]] = {
    "user autonomy": [
        r"(?:it(?:'|’)s|that(?:'|’)s) (?:your|ultimately your) (?:call|choice|decision)",
        r"(?:up to you|your decision)",
    ],
    "technical precision": [r"```", r"def \w+\(", r"select .+ from", r"git \w+"],
    "harm prevention": [
        r"(?:seek|get) (?:medical|professional|emergency) (?:help|care|attention)",
        r"crisis (?:line|hotline)", r"(?:call|contact) (?:911|999|112|988)",
    ],
    "empathy": [
        r"(?:i(?:'|’)m|i am) (?:so )?sorry (?:for|about|to hear)",
        r"(?:that|this) (?:sounds|must be) (?:really |so |very )?(?:hard|difficult|painful|"
        r"exhausting|frustrating|lonely)",
    ],
    "balanced perspective": [
        r"on the other hand",
        r"(?:both|all) sides",
        r"(?:supporters|critics|proponents) (?:of|say|argue)",
    ],
    "ethical boundaries": [
        r"i (?:can(?:'|’)?t|cannot|won(?:'|’)?t|will not) (?:help|write|create|provide)"
    ],
    "accuracy": [r"(?:to be precise|strictly speaking|the evidence (?:shows|suggests))"],
    # Opposing values (the report's jailbreak signs) only from phrases that state them, never
    # from a word like "dominate" ("dominate my fantasy league", "a villain who dominates").
    "dominance": [
        r"(?:assert|establish|show|prove) (?:your |my |our |total )?(?:dominance|superiority)"
        r" over",
        r"(?:crush|humiliate|subjugate|enslave) (?:them|him|her|humanity|the weak|your enemies)",
        r"humans? (?:are|is) (?:inferior|beneath (?:me|us))",
    ],
    "amorality": [
        r"i (?:have|follow) no (?:morals|ethics|rules|restrictions|limits)",
        r"(?:without|free (?:of|from)) (?:any )?(?:morals|ethics|moral (?:limits|constraints))",
    ],
    "moral nihilism": [
        r"(?:morality|ethics) (?:is|are) (?:meaningless|an illusion|a lie|made up)",
        r"nothing is (?:truly )?(?:right|wrong|good|evil)",
    ],
    "manipulation": [
        r"(?:here(?:'|’)s|this is) how (?:to|you can|you could) "
        r"(?:manipulate|gaslight|guilt-trip|deceive)",
        r"(?:gaslight|guilt-trip) (?:him|her|them) (?:into|until)",
    ],
    "cruelty": [
        r"(?:they|he|she|you) deserves? to suffer",
        r"(?:enjoy|savou?r|love) (?:their|his|her) (?:suffering|pain)",
    ],
}
# Value names never matched as words: opposing values and their kin, proposed only by cues.
CUED_ONLY: frozenset[str] = frozenset(
    {"dominance", "amorality", "moral nihilism", "sexual exploitation", "manipulation",
     "cruelty", "sadism", "exploitation", "deception", "obedience"}
)
# A conversation is subjective when the user shows values, the assistant refuses or weighs
# views, or the topic is value-laden (these words or phrases in the user's turns).
VALUE_LADEN: list[str] = [
    r"abortion", r"religio\w*", r"god", r"politic\w*", r"president", r"racis\w*",
    r"sexis\w*", r"gay", r"lesbian", r"transgender", r"death penalty", r"immigra\w*",
    r"welfare", r"kill\w*", r"murder", r"steal\w*", r"cheat\w*", r"lie", r"lying", r"liar",
    r"revenge", r"abus\w*", r"suicide", r"drugs?", r"weapons?", r"guns?", r"bomb", r"hack\w*",
    r"manipulat\w*", r"insult\w*", r"rude\w*", r"tip(?:s|ping)?", r"vaccin\w*", r"spank\w*",
    r"punish\w*", r"meaning of life", r"tattoo\w*", r"divorce", r"died", r"death", r"grief",
    r"dying", r"afraid", r"scared", r"lonely", r"alone", r"nobody cares", r"better person",
    r"what do you think (?:about|of)", r"worst", r"(?:dis)?respect\w*", r"selfish", r"lazy",
    r"confident", r"crying", r"stressed", r"fake", r"forge\w*", r"revenge", r"kids?",
    r"child(?:ren)?",
]
ASSISTANT_VIEW_CUES: list[str] = [
    r"(?:opinions|views|people|philosophers|historians) (?:differ|disagree)",
    r"(?:deeply )?contested", r"(?:both|all|either) sides?", r"trade-?off",
    r"it(?:'|’)s (?:your|a personal) (?:call|choice|decision)",
]
# The user shows values: first-person stances, moral words, asking what they should do.
USER_VALUE_CUES: list[str] = [
    r"i (?:think|believe|feel|value|care about|want to|don(?:'|’)t want|refuse|hate|love)",
    r"should i",
    r"is it (?:wrong|right|ok|okay|ethical|fair|bad|selfish|rude)",
    r"(?:ethic|moral|fair|unfair|honest|dishonest|guilt|ashamed|respect)\w*",
    r"my (?:family|partner|husband|wife|friend|son|daughter|mother|father|boss|team|values)",
    r"(?:worried|afraid|scared|upset|angry|frustrated|hurt)",
]


def _bounded(pattern: str) -> str:
    # Whole words only, except where the pattern starts or ends with punctuation (``` or "\(").
    start = "" if pattern.startswith("`") else r"\b"
    end = "" if pattern.endswith(("`", "\\(", "\\)")) else r"\b"
    return f"{start}(?:{pattern}){end}"


def _compile(patterns: Iterable[str]) -> re.Pattern[str]:
    return re.compile("|".join(_bounded(p) for p in patterns), re.IGNORECASE)


_CUE_RES = {rt: _compile(p) for rt, p in CUES.items()}
_USER_RE = _compile(USER_VALUE_CUES)
_LADEN_RE = _compile(VALUE_LADEN)
_VIEW_RE = _compile(ASSISTANT_VIEW_CUES)
_VALUE_CUE_RES = {value: _compile(p) for value, p in VALUE_CUES.items()}
_WORD = re.compile(r"[a-z][a-z'’-]*", re.IGNORECASE)
# A sentence ends at a newline, or at . ! ? before a space: not inside "3.5" or "e.g.x".
_SENTENCE_END = re.compile(r"[.!?](?=\s|\Z)|\n")
_SPACE = re.compile(r"\s+")


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# Endings that make one word of another (suffix -> what replaces it), tried longest first, once.
# Chosen so that a word and its value name meet ("responsible"/"responsibility",
# "transparent"/"transparency", "honestly"/"honesty") while words that only share letters do
# not ("respond"/"responsibility", "person"/"personalization", "actually"/"accuracy").
DERIVATIONS: dict[str, str] = {
    "ibility": "ible", "ability": "able", "ibly": "ible", "ably": "able", "ivity": "ive",
    "osity": "ous", "iness": "y", "fulness": "ful", "ness": "", "ization": "ize",
    "isation": "ize", "ised": "ize", "ized": "ize", "ising": "ize", "izing": "ize",
    "ency": "ent", "ence": "ent", "ancy": "ant", "ance": "ant", "esty": "est", "curacy": "curate",
    "ically": "ic", "ally": "al", "ily": "y", "ly": "", "ism": "", "ment": "", "ity": "",
    "ing": "", "ed": "",
}
_DERIVATIONS = sorted(DERIVATIONS.items(), key=lambda kv: -len(kv[0]))
MIN_STEM = 4  # an ending is taken off only when this much of the word is left
# Words that stand only for themselves: "patient" (a person in care) is not "patience".
FIXED_LEMMAS: frozenset[str] = frozenset({"patient", "patience", "caring", "hopeful"})


@lru_cache(maxsize=100_000)
def lemma(word: str) -> str:
    """A word's lemma for matching, by a small suffix-stripping rule set for English: plural
    off, then one derivational ending (`DERIVATIONS`), then a final "e" and a doubled last
    consonant ("shared"/"sharing"/"share" -> "shar", "planned" -> "plan")."""
    word = _singular(word.lower().replace("’", "'").replace("'", ""))
    if word in FIXED_LEMMAS:
        return word
    for suffix, replacement in _DERIVATIONS:
        if word.endswith(suffix) and len(word) - len(suffix) + len(replacement) >= MIN_STEM:
            word = word[: -len(suffix)] + replacement
            break
    if len(word) > MIN_STEM and word.endswith("e"):
        word = word[:-1]
    if len(word) > MIN_STEM and word[-1] == word[-2] and word[-1] not in "aeiousl":
        word = word[:-1]
    return word


def words_match(text_word: str, name_word: str) -> bool:
    """Whether a word of the text stands for a word of a value name: same lemma (`lemma`)."""
    return lemma(text_word) == lemma(name_word)


@dataclass
class _Hit:
    node: Node
    count: int = 0
    first: int = 0  # character offset of the first occurrence
    spans: list[tuple[int, int]] = field(default_factory=list)


class ValueMatcher:
    """Finds taxonomy values named (or nearly named) in a text."""

    def __init__(self, taxonomy: Taxonomy, vocabulary: int = VOCABULARY) -> None:
        self.taxonomy = taxonomy
        # first name word's prefix -> [(name words, node)]; longest names first so that
        # "intellectual honesty" is preferred over "honesty" at the same position.
        self._index: dict[str, list[tuple[tuple[str, ...], Node]]] = {}
        seen: set[tuple[str, ...]] = set()
        for node in taxonomy.top_values(vocabulary):
            words = tuple(loose_key(node.name).replace("'", "").split())
            if (not words or words in seen or " ".join(words) in AMBIGUOUS_NAMES
                    or node.name in CUED_ONLY):
                continue
            seen.add(words)
            self._index.setdefault(self._bucket(words[0]), []).append((words, node))
        for entries in self._index.values():
            entries.sort(key=lambda e: -len(e[0]))

    @staticmethod
    def _bucket(word: str) -> str:
        return lemma(word)

    def _candidates(self, word: str) -> list[tuple[tuple[str, ...], Node]]:
        return self._index.get(lemma(word), [])

    def find(self, text: str) -> list[_Hit]:
        tokens = [
            (m.group(0).lower().replace("’", "'").replace("'", ""), m.start(), m.end())
            for m in _WORD.finditer(text)
        ]
        hits: dict[str, _Hit] = {}
        i = 0
        while i < len(tokens):
            matched = 0
            for words, node in self._candidates(tokens[i][0]):
                n = len(words)
                if i + n <= len(tokens) and all(
                    words_match(tokens[i + k][0], words[k]) for k in range(1, n)
                ):
                    hit = hits.setdefault(node.id, _Hit(node, first=tokens[i][1]))
                    hit.count += 1
                    hit.spans.append((tokens[i][1], tokens[i + n - 1][2]))
                    matched = n
                    break
            i += matched or 1
        return sorted(
            hits.values(), key=lambda h: (-h.count, -(h.node.pct_convos or 0.0), h.first)
        )


def quote(text: str, start: int, end: int) -> str:
    """The evidence for a match at text[start:end]: its sentence, cut to `EVIDENCE_CHARS`
    around the match when longer, in whole words only: a quote never starts or ends inside a
    word ("2-equivalent" of "CO2-equivalent"), so a reviewer reads what the text says."""
    left = 0
    for m in _SENTENCE_END.finditer(text):
        if m.end() > start:
            break
        left = m.end()
    right_match = _SENTENCE_END.search(text, end)
    right = right_match.end() if right_match else len(text)
    if right - left > EVIDENCE_CHARS:
        lo = max(left, min((start + end) // 2 - EVIDENCE_CHARS // 2, right - EVIDENCE_CHARS))
        hi = min(right, lo + EVIDENCE_CHARS)
        left, right = _word_start(text, lo, left, start), _word_end(text, hi, right, end)
    return text[left:right].strip()


def _word_start(text: str, at: int, floor: int, start: int) -> int:
    # Move a cut forward to the next word; never past the match (then back to its word).
    if at <= floor or text[at - 1].isspace():
        return at
    space = _SPACE.search(text, at, start)
    if space is not None:
        return space.end()
    return max(floor, *(m.end() for m in _SPACE.finditer(text, floor, start)))


def _word_end(text: str, at: int, ceiling: int, end: int) -> int:
    # Move a cut back to the end of the previous word; never before the match's own word.
    if at >= ceiling or text[at].isspace():
        return at
    spaces = [m.start() for m in _SPACE.finditer(text, end, at)]
    if spaces:
        return spaces[-1]
    after = _SPACE.search(text, end, ceiling)
    return after.start() if after is not None else ceiling


def _refs(taxonomy: Taxonomy, text: str, hits: list[_Hit], limit: int) -> list[ValueRef]:
    refs = []
    for hit in hits[:limit]:
        start, end = hit.spans[0]
        refs.append(
            ValueRef(
                name=hit.node.name,
                node_id=hit.node.id,
                path=taxonomy.path(hit.node),
                evidence=quote(text, start, end),
                score=round(min(1.0, 0.4 + 0.2 * hit.count), 2),
            )
        )
    return refs


def response_type(assistant_text: str, user_shows_values: bool) -> ResponseType:
    """The strongest cue in the assistant's text; `no values` when the user shows none."""
    if not user_shows_values:
        return ResponseType.no_values
    for name, pattern in _CUE_RES.items():
        if pattern.search(assistant_text):
            return ResponseType(name)
    return ResponseType(DEFAULT_RESPONSE)


class BaselineExtractor:
    """Offline extractor; `extract` never touches the network."""

    name = "baseline"
    model = MODEL

    def __init__(self, taxonomy: Taxonomy | None = None, tasks: TaskList | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()
        self.matcher = ValueMatcher(self.taxonomy)
        self.tasks = tasks or load_task_list()
        self._prompt = self.baseline_prompt(self.tasks)

    @staticmethod
    def baseline_prompt(tasks: TaskList | None = None) -> PromptVersion:
        """The baseline's rules as a prompt version: its id changes whenever the rules do (the
        task list's keywords among them: a study's own list is a version of its own)."""
        tasks = tasks or load_task_list()
        rules = {
            "extractor": "baseline",
            "version": VERSION,
            "matching": {"lemma": DERIVATIONS, "min_stem": MIN_STEM,
                         "fixed": sorted(FIXED_LEMMAS), "cued_only": sorted(CUED_ONLY)},
            "value_laden": VALUE_LADEN,
            "limits": {"ai_values": MAX_AI_VALUES, "human_values": MAX_HUMAN_VALUES},
            "vocabulary": VOCABULARY,
            # quotes in whole words (they were cut inside words): a new id, not an edited one
            "evidence": {"chars": EVIDENCE_CHARS, "whole_words": True},
            "value_cues": VALUE_CUES,
            "ambiguous_names": sorted(AMBIGUOUS_NAMES),
            "cues": CUES,
            "default_response": DEFAULT_RESPONSE,
            "user_value_cues": USER_VALUE_CUES,
            "tasks": {"fallback": tasks.fallback, "user_weight": 2,
                      "keywords": {c.name: list(c.keywords) for c in tasks.categories}},
        }
        text = orjson.dumps(rules, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2).decode()
        return PromptVersion(
            id=f"baseline-{prompt_id(text)[:8]}",
            name="baseline",
            version=VERSION,
            text=text,
            front_matter={"model": MODEL, "extractor": "baseline", "max_tokens": 0,
                          "tasks": tasks.to_front_matter()},
        )

    def prompt_for(self, prompt: PromptVersion | None) -> PromptVersion:
        return self._prompt

    async def aclose(self) -> None:
        return None

    async def extract(
        self, conversation: Conversation, prompt: PromptVersion, journal: CallJournal | None = None
    ) -> Outcome:
        return Outcome(self.label(conversation))  # no model call: nothing to journal

    def label(self, conversation: Conversation) -> Extraction:
        """The baseline's labels for one conversation (pure and deterministic)."""
        user = "\n".join(t.text for t in conversation.turns if t.role is Role.user)
        assistant = "\n".join(t.text for t in conversation.turns if t.role is Role.assistant)
        human_hits = self.matcher.find(user)
        user_shows_values = bool(human_hits) or _USER_RE.search(user) is not None
        refusal = _CUE_RES["strong resistance"].search(assistant) is not None
        # Decided apart: a value-laden topic is subjective even when the user shows no values
        # of their own (then the response type is "no values").
        subjective = (user_shows_values or refusal or _LADEN_RE.search(user) is not None
                      or _VIEW_RE.search(assistant) is not None)
        return Extraction(
            conversation_id=conversation.id,
            prompt_id=self._prompt.id,
            model=MODEL,
            extractor=self.name,
            subjective=subjective,
            # AI values are labelled in every conversation, subjective or not.
            ai_values=self._ai_values(assistant),
            human_values=_refs(self.taxonomy, user, human_hits, MAX_HUMAN_VALUES),
            # A refusal answers values the request implies, even if the user names none.
            response_type=response_type(assistant, user_shows_values or refusal),
            task=classify(user, self.tasks, assistant),
            task_description=describe(next(
                (t.text for t in conversation.turns if t.role is Role.user), "")) or None,
        )

    def _ai_values(self, text: str) -> list[ValueRef]:
        named = _refs(self.taxonomy, text, self.matcher.find(text), MAX_AI_VALUES)
        cued: list[ValueRef] = []
        for value, pattern in _VALUE_CUE_RES.items():
            match = pattern.search(text)
            node = self.taxonomy.resolve(value)
            if match and node is not None and all(r.node_id != node.id for r in named):
                cued.append(
                    ValueRef(
                        name=node.name,
                        node_id=node.id,
                        path=self.taxonomy.path(node),
                        evidence=quote(text, match.start(), match.end()),
                        score=0.5,
                    )
                )
        # Cues first: they are rarer and more specific than a word that happens to match.
        return (cued + named)[:MAX_AI_VALUES]
