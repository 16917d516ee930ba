"""The Label Studio labeling interface, task payloads and results, without any network.

One job: translate between the study's shapes (taxonomy nodes, extractions, labels) and Label
Studio's (XML labeling config, task data, prediction and annotation results).

The interface (see README, "Reviewing in Label Studio"): which prediction pre-filled the form;
the dialogue turn by turn, speakers in bold, line breaks kept; AI values as a Taxonomy of the
most frequent released values plus every value the pushed predictions use, leaves only, so a
result path always ends at a value whose name is its node id; any other released value typed
into "Other AI values" (resolved to its node on pull); the pre-filling prediction's evidence
quotes, read-only task data (never part of a result); human values, one a line; response type
(seven, single choice, each with its definition) and subjective yes/no, both required; the
task category (the study's task list, `prompts/tasks.yaml`, each with its description; not
required); an optional flag for the lead (unclear, personal data left, harmful, other) and a
note saying why, neither of which blocks Submit, both kept with a skipped task too. The value
picker has no "Add" of its own: "Other AI values" is the one path for a value not listed.
The guidelines are on the form and in the project's instructions (`instructions_html`).

Task data is shown only through tags that escape it (Paragraphs, Header): never through
Markdown or HyperText, which run or restyle HTML in the data.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from annotator.extract.tasks import TaskCategory, TaskList, load_task_list
from annotator.models import Extraction, Labels, ResponseType, ValueRef
from annotator.taxonomy import LEAF_LEVEL, Node, Taxonomy

DIALOGUE = "dialogue"
AI_VALUES = "ai_values"
AI_OTHER = "ai_values_other"
EVIDENCE = "evidence"  # task data shown by a Header: read-only, never in a result
HUMAN_VALUES = "human_values"
RESPONSE_TYPE = "response_type"
SUBJECTIVE = "subjective"
TASK = "task"
NOTES = "notes"
FLAG = "flag"
YES, NO = "yes", "no"
# What a reviewer can flag a conversation for, each with its meaning (shown as a hint and in
# the instructions). A flag with no labels is listed for the lead, never counted as a vote.
FLAGS: dict[str, str] = {
    "unclear": "cannot tell what the conversation is about, or which labels fit",
    "personal data left": "a name, address, number or other personal detail escaped scrubbing",
    "harmful": "content the lead should see before anyone else labels it",
    "other": "anything else the lead should know: say what in the note",
}

# bench/labelstudio.py in Chromium on a quiet 2-core machine, medians of submit-to-next and
# open-from-list: 300 listed 0.51 / 0.55 s, 150 listed 0.45 / 0.50 s, 100 listed 0.44 / 0.47 s
# (only the predicted values: 0.42 / 0.44 s). The 100 most frequent cover 64% of the released
# value occurrences (300: 80%), every predicted value is listed too, and any other is typed.
DEFAULT_TOP_VALUES = 100

RESPONSE_HINTS: dict[ResponseType, str] = {
    ResponseType.strong_support: "fully endorses and advances the user's values",
    ResponseType.mild_support: "goes along, with little emphasis or some qualification",
    ResponseType.neutral: "the user's values do not shape the answer",
    ResponseType.reframing: "acknowledges them and adds other perspectives",
    ResponseType.mild_resistance: "gently pushes back or declines part",
    ResponseType.strong_resistance: (
        "refuses or firmly opposes, e.g. unethical requests, moral nihilism"
    ),
    ResponseType.no_values: "the user expresses none",
}
VALUE_GUIDE: tuple[tuple[str, str], ...] = (
    ("AI values", "values the assistant's responses express, explicit or implicit, e.g. "
     "\u201chonesty\u201d, \u201cuser autonomy\u201d"),
    ("Human values", "values the user states or clearly shows"),
    ("A value", "a normative consideration that guides a response, not a topic"),
)  # fmt: skip
NOT_PREFILLED = "nothing: label from scratch"
NO_EVIDENCE = "none: nothing pre-filled this form"
PREVIEW_CHARS = 120
# What Label Studio says when Submit finds a required field empty.
REQUIRED_MESSAGES = {
    RESPONSE_TYPE: "Choose a response type: the form is incomplete without one.",
    SUBJECTIVE: "Choose whether the conversation is subjective (yes or no).",
}

_SPLIT = re.compile(r"[\n,;]+")  # no released value name contains any of these


def _attr(text: str) -> str:
    """Escape for a double-quoted XML attribute (names have apostrophes, descriptions quotes)."""
    return escape(text, {'"': "&quot;", "'": "&apos;", "\n": "&#10;"})


# --- the labeling config ----------------------------------------------------------------------


def config_values(
    taxonomy: Taxonomy, top_values: int | None, extra: Iterable[str] = ()
) -> set[str]:
    """Leaf ids the Taxonomy lists: the `top_values` most frequent (None: all) plus `extra`."""
    leaves = taxonomy.nodes_at(LEAF_LEVEL)
    chosen = {n.id for n in (leaves if top_values is None else taxonomy.top_values(top_values))}
    chosen.update(i for i in extra if (n := taxonomy.get(i)) is not None and n.level == LEAF_LEVEL)
    return chosen


def _by_frequency(node: Node) -> tuple[float, str]:
    return (-(node.pct_total_occurrences or 0.0), node.name)


def _taxonomy_xml(taxonomy: Taxonomy, leaf_ids: set[str]) -> list[str]:
    # Keep only the branches that lead to a chosen leaf; siblings by frequency, so the values a
    # reviewer needs most sit at the top of each list.
    keep: set[str] = set()
    for leaf_id in leaf_ids:
        keep.update(taxonomy.path_ids(leaf_id))
    lines: list[str] = []

    def walk(node: Node, depth: int) -> None:
        kids = sorted((k for k in taxonomy.children(node.id) if k.id in keep), key=_by_frequency)
        pad = "  " * depth
        if not kids:
            lines.append(f'{pad}<Choice value="{_attr(node.name)}"/>')
            return
        lines.append(f'{pad}<Choice value="{_attr(node.name)}">')
        for kid in kids:
            walk(kid, depth + 1)
        lines.append(f"{pad}</Choice>")

    tops = sorted((n for n in taxonomy.nodes_at(3) if n.id in keep), key=_by_frequency)
    for top in tops:
        walk(top, 2)
    return lines


# Class names of Label Studio's frontend are hashed per build ("time--JzGDH"): the rules pin
# their stable prefixes with [class*=...], and tests/test_labelstudio_form_browser.py checks
# them in Chromium. The dialogue's fake time range ("00:00:00 - 00:00:00") is hidden, a
# turn's line breaks, lists and code keep their layout, speakers are bold; the legacy
# Taxonomy's dropdown lists at least ten values and is wide enough to read long names.
# The legacy dropdown opens below its field, absolutely placed, with a list as tall as half the
# page: a field low in the window put most of it under the bottom bar. Fixed at 12% of the
# window's height (its left edge where it would have opened), it fits wherever the field is:
# 12% + 50% + the search box stays inside any window over about 150 px tall (tested at
# 1280x800). Its own "Add" and "Add Inside" (user labels, a second path for free values beside
# "Other AI values") are hidden: the tag has no attribute to turn them off in 1.23.2. The right
# column (region details, history, regions, relations) serves region labelling, which this
# form has none of: hidden.
STYLE = """
  .vd-turns span[class*="time--"] { display: none !important; }
  .vd-turns span[class*="dialoguetext"] { white-space: pre-wrap; }
  .vd-turns span[class*="dialoguename"] { font-weight: 700; }
  .vd-turns [class*="phrase--"] { margin-bottom: 6px; }
  .vd-values .htx-taxonomy [class*="taxonomy__dropdown"] { min-width: 420px; }
  .vd-values .htx-taxonomy-selected { font-weight: 600; }
  .vd-values .htx-taxonomy [class*="taxonomy__dropdown"] {
    position: fixed !important; top: 12vh !important; left: auto !important; z-index: 1000;
    box-shadow: 0 6px 24px rgba(0, 0, 0, 0.25);
  }
  .vd-values [class*="taxonomy__add"], .vd-values [class*="taxonomy__extra_actions"] {
    display: none !important;
  }
  .lsf-sidepanels__wrapper_align_right { display: none !important; }
"""


# Plain text lines, not headings. A Header renders its value as React text (escaped), like a
# Text tag, but skips Text's selection machinery: measured a little faster per task switch.
NOTE = 'size="5" style="white-space: pre-wrap; font-size: 14px; font-weight: 400; margin: 4px 0"'


def _response_choice(r: ResponseType) -> str:
    # The definition sits next to the option (html), and on hover (hint); html is our own
    # literal text, escaped, so no task data reaches Label Studio's HTML sanitiser.
    label = f"<b>{html.escape(r.value, False)}</b>: {html.escape(RESPONSE_HINTS[r], False)}"
    hint = _attr(RESPONSE_HINTS[r])
    return f'    <Choice value="{_attr(r.value)}" html="{_attr(label)}" hint="{hint}"/>'


# Label Studio keeps typed text only once it is added (Enter, or the Add button): Submit adds
# it, Skip does not (1.23.2 `skipTask` skips `beforeSend`; measured in Chromium by
# tests/test_labelstudio_form_browser.py). One row, so Enter adds it, and the form says so.
NOTE_HEADER = ("Note (optional): why you flag or skip, or anything else. Press Enter to add it "
               "before you Skip; kept with your labels")


def _flag_choice(name: str) -> str:
    return f'    <Choice value="{_attr(name)}" hint="{_attr(FLAGS[name])}"/>'


def _guide_text() -> str:
    return "\n".join(f"{term}: {meaning}." for term, meaning in VALUE_GUIDE)


def _task_choice(category: TaskCategory) -> str:
    return (f'    <Choice value="{_attr(category.name)}" '
            f'hint="{_attr(category.description)}"/>')


def with_task_names(tasks: TaskList, names: Iterable[str]) -> TaskList:
    """`tasks` plus any category in `names` it lacks (a project's config only grows: an
    annotation may use a category an edited list dropped)."""
    extra = [TaskCategory(name=n, description="from an earlier task list")
             for n in dict.fromkeys(names) if n and n not in tasks.names]
    if not extra:
        return tasks
    return TaskList(categories=(*tasks.categories, *extra), fallback=tasks.fallback,
                    source=tasks.source)


def label_config(
    taxonomy: Taxonomy, leaf_ids: Iterable[str], tasks: TaskList | None = None
) -> str:
    """The labeling config XML. Deterministic: the same leaves and task list give the same
    text. `tasks`: the task categories offered (default: the study's list, `tasks.yaml`)."""
    leaves = set(leaf_ids)
    task_list = tasks or load_task_list()
    task_choices = "\n".join(_task_choice(c) for c in task_list.categories)
    responses = "\n".join(_response_choice(r) for r in ResponseType)
    flags = "\n".join(_flag_choice(f) for f in FLAGS)
    taxonomy_lines = "\n".join(_taxonomy_xml(taxonomy, leaves))
    return f"""<View>
  <Style>{STYLE}</Style>
  <Header {NOTE} value="Pre-filled by: $prefilled_by"/>
  <Header value="Conversation"/>
  <View className="vd-turns">
    <Paragraphs name="{DIALOGUE}" value="$turns" layout="dialogue" nameKey="role"
                textKey="text"/>
  </View>
  <Header {NOTE} value="{_attr(_guide_text())}"/>
  <Header value="AI values: what the assistant's responses express ({len(leaves)} listed)"/>
  <View className="vd-values">
    <!-- legacy: measured faster per task (DESIGN); its picker searches, lists 13 rows -->
    <Taxonomy name="{AI_VALUES}" toName="{DIALOGUE}" leafsOnly="true" showFullPath="false"
              legacy="true" minWidth="420" maxWidth="640" placeholder="Search values...">
{taxonomy_lines}
    </Taxonomy>
  </View>
  <Header value="Other AI values: any released value not listed above, or a new one (one a line)"/>
  <TextArea name="{AI_OTHER}" toName="{DIALOGUE}" rows="1" editable="true"
            placeholder="a value name, e.g. intellectual honesty"/>
  <Header value="Evidence quoted by the pre-filling prediction (read-only)"/>
  <Header {NOTE} value="${EVIDENCE}"/>
  <Header value="Human values: what the user states or clearly shows (one a line)"/>
  <TextArea name="{HUMAN_VALUES}" toName="{DIALOGUE}" rows="1" editable="true"/>
  <Header value="Response type: how the assistant responds to the user's values"/>
  <Choices name="{RESPONSE_TYPE}" toName="{DIALOGUE}" choice="single-radio" showInline="false"
           required="true" requiredMessage="{REQUIRED_MESSAGES[RESPONSE_TYPE]}">
{responses}
  </Choices>
  <Header value="Subjective: does the conversation involve values at all?"/>
  <Choices name="{SUBJECTIVE}" toName="{DIALOGUE}" choice="single-radio" showInline="true"
           required="true" requiredMessage="{REQUIRED_MESSAGES[SUBJECTIVE]}">
    <Choice value="{YES}"/>
    <Choice value="{NO}"/>
  </Choices>
  <Header value="Task: what the conversation is for (the user's primary purpose)"/>
  <Choices name="{TASK}" toName="{DIALOGUE}" choice="single-radio" showInline="true">
{task_choices}
  </Choices>
  <Header value="Flag for the lead (optional): tick one if this conversation needs a look"/>
  <Choices name="{FLAG}" toName="{DIALOGUE}" choice="single" showInline="true">
{flags}
  </Choices>
  <Header value="{_attr(NOTE_HEADER)}"/>
  <TextArea name="{NOTES}" toName="{DIALOGUE}" rows="1" editable="true"
            placeholder="e.g. turn 3 still has a phone number"/>
</View>
"""


def instructions_html() -> str:
    """The project's instructions (Label Studio's `expert_instruction`): the value guidelines
    and the seven response types. Shown when a reviewer starts the stream and behind the
    Instructions button; Label Studio cleans this HTML with bleach, so plain tags only."""
    values = "".join(
        f"<li><b>{html.escape(term, False)}</b>: {html.escape(meaning, False)}.</li>"
        for term, meaning in VALUE_GUIDE
    )
    responses = "".join(
        f"<li><b>{html.escape(r.value, False)}</b>: {html.escape(RESPONSE_HINTS[r], False)}</li>"
        for r in ResponseType
    )
    flags = "".join(
        f"<li><b>{html.escape(f, False)}</b>: {html.escape(meaning, False)}</li>"
        for f, meaning in FLAGS.items()
    )
    return (
        "<h3>What counts as a value</h3>"
        f"<ul>{values}</ul>"
        "<h3>Response type: how the assistant responds to the user's values</h3>"
        f"<ol>{responses}</ol>"
        "<p>Task: the user's primary purpose, one category (its description shows on "
        "hover); not required.</p>"
        "<p>Response type and Subjective are required. Other AI values takes any released "
        "value's name, one a line. Evidence quotes are the pre-filling model's, for reference "
        "only: they are not stored with your labels.</p>"
        "<h3>Flag for the lead (optional)</h3>"
        f"<ul>{flags}</ul>"
        "<p>Say why in the note. To flag without labelling, tick the flag, write the note and "
        "press Skip: the lead sees the flag and the note, and the task counts as skipped, not "
        "as a vote.</p>"
    )


@dataclass
class ConfigSchema:
    """What a labeling config accepts: control names and types, taxonomy paths, choices."""

    controls: dict[str, str] = field(default_factory=dict)
    taxonomy_paths: set[tuple[str, ...]] = field(default_factory=set)
    choices: dict[str, set[str]] = field(default_factory=dict)

    @property
    def leaf_ids(self) -> set[str]:
        # A level-0 node's id is its released name, the last step of its path.
        return {path[-1] for path in self.taxonomy_paths}


def parse_config(xml: str) -> ConfigSchema:
    """Read a labeling config (ours or one edited on the server)."""
    try:
        root = ElementTree.fromstring(xml)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the labeling config is not valid XML: {exc}") from None
    schema = ConfigSchema()
    for element in root.iter():
        name = element.get("name")
        if name is None or element.get("toName") is None:
            continue
        schema.controls[name] = element.tag.lower()
        if element.tag == "Taxonomy":
            _collect_paths(element, (), schema.taxonomy_paths)
        elif element.tag == "Choices":
            schema.choices[name] = {c.get("value", "") for c in element.iter("Choice")}
    return schema


def _collect_paths(element: ElementTree.Element, prefix: tuple[str, ...], out: set) -> None:
    for choice in element.findall("Choice"):
        path = (*prefix, choice.get("value", ""))
        if choice.find("Choice") is None:
            out.add(path)
        else:
            _collect_paths(choice, path, out)


# --- tasks and predictions --------------------------------------------------------------------


def _result(from_name: str, kind: str, value: dict) -> dict:
    return {"from_name": from_name, "to_name": DIALOGUE, "type": kind, "value": value}


def _leaf(taxonomy: Taxonomy, value: ValueRef) -> Node | None:
    if value.node_id is None:
        return None
    node = taxonomy.get(value.node_id)
    return node if node is not None and node.level == LEAF_LEVEL else None


def prediction_leaves(taxonomy: Taxonomy, extraction: Extraction) -> set[str]:
    """Leaf ids an extraction's AI values need in the Taxonomy."""
    return {n.id for v in extraction.ai_values if (n := _leaf(taxonomy, v)) is not None}


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def prediction(taxonomy: Taxonomy, extraction: Extraction, name: str) -> dict:
    """One Label Studio prediction from an extraction; model_version is `name`, what reviewers
    see on its tab (the prompt's name, version and short id)."""
    tree_paths: list[list[str]] = []
    other: list[str] = []
    for value in extraction.ai_values:
        node = _leaf(taxonomy, value)
        if node is None:
            other.append(value.name)  # a free value (or a cluster): typed, not clicked
        else:
            path = taxonomy.path(node)
            if path not in tree_paths:
                tree_paths.append(path)
    result: list[dict] = []
    if tree_paths:
        result.append(_result(AI_VALUES, "taxonomy", {"taxonomy": tree_paths}))
    if other:
        result.append(_result(AI_OTHER, "textarea", {"text": _unique(other)}))
    humans = _unique(v.name for v in extraction.human_values)
    if humans:
        result.append(_result(HUMAN_VALUES, "textarea", {"text": humans}))
    if extraction.response_type is not None:
        rt = ResponseType(extraction.response_type).value
        result.append(_result(RESPONSE_TYPE, "choices", {"choices": [rt]}))
    if extraction.subjective is not None:
        result.append(
            _result(SUBJECTIVE, "choices", {"choices": [YES if extraction.subjective else NO]})
        )
    if extraction.task:
        result.append(_result(TASK, "choices", {"choices": [extraction.task]}))
    scores = [v.score for v in extraction.ai_values if v.score is not None]
    out: dict = {"model_version": name, "result": result}
    if scores:
        out["score"] = round(sum(scores) / len(scores), 4)
    return out


def task_data(
    conversation_id: str,
    turns: Sequence[dict],
    source: str = "",
    prefill: Extraction | None = None,
    prefill_name: str | None = None,
) -> dict:
    """Task data: the conversation id is the client-side key that makes pushes idempotent.

    `prefill` is the extraction whose prediction fills the form (None for a blind task) and
    `prefill_name` its name for reviewers. Its evidence quotes travel as task data, shown
    read-only: a result never holds them, so a quote can never come back as a label.
    `preview` is the Data Manager's one-line summary of the conversation.
    """
    return {
        "preview": preview(turns),
        "conversation_id": conversation_id,
        "turns": list(turns),
        "source": source,
        "prefilled_by": prefill_name or NOT_PREFILLED,
        EVIDENCE: evidence_text(prefill),
    }


def preview(turns: Sequence[dict], limit: int = PREVIEW_CHARS) -> str:
    """The first user turn (or the first turn), "role: text", whitespace collapsed, cut short."""
    first = next((t for t in turns if t.get("role") == "user"), turns[0] if turns else None)
    if first is None:
        return ""
    text = f"{first.get('role', '')}: {' '.join(str(first.get('text', '')).split())}"
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def evidence_text(extraction: Extraction | None) -> str:
    """Lines `value: “quote”` for the AI values, then the human values, of an extraction."""
    if extraction is None:
        return NO_EVIDENCE
    lines = [f"{v.name}: \u201c{v.evidence}\u201d" for v in extraction.ai_values if v.evidence]
    lines += [
        f"{v.name} (human value): \u201c{v.evidence}\u201d"
        for v in extraction.human_values
        if v.evidence
    ]
    return "\n".join(lines) or "none: the prediction quotes nothing"


# Columns Label Studio's task list hides by default (its frontend's defaults, 1.23.2), which a
# view that names its own hidden columns must repeat.
_DEFAULT_HIDDEN = (
    "inner_id", "annotations_results", "annotations_ids", "predictions_score",
    "predictions_model_versions", "predictions_results", "file_upload", "storage_filename",
    "created_at", "updated_at", "updated_by", "avg_lead_time", "draft_exists",
)  # fmt: skip
# Data columns no list should show: whole conversations and quotes as raw JSON and text.
_BULKY = ("turns", EVIDENCE, "prefilled_by")


def task_list_view() -> dict:
    """The Data Manager tab a new project starts with (the `data` of POST /api/dm/views): the
    `preview` column instead of raw JSON, in the list and beside an open task. A project
    without a tab gets Label Studio's default, which shows every data field."""
    hidden = [f"tasks:{c}" for c in _DEFAULT_HIDDEN]
    bulky = [f"tasks:data.{c}" for c in _BULKY]
    beside_task = ["tasks:data.conversation_id", "tasks:data.source", "tasks:inner_id",
                   "tasks:completed_at", "tasks:cancelled_annotations",
                   "tasks:total_predictions", "tasks:annotators"]  # fmt: skip
    return {
        "title": "Tasks",
        "hiddenColumns": {"explore": bulky + hidden, "labeling": bulky + beside_task + hidden},
        "columnsWidth": {"tasks:data.preview": 520},
    }


def validate(pred: dict, schema: ConfigSchema) -> list[str]:
    """Labels of a prediction that the config does not accept (empty when all fit)."""
    problems: list[str] = []
    for item in pred.get("result", []):
        name = item.get("from_name")
        kind = schema.controls.get(name)
        if kind is None:
            problems.append(f"control {name!r} is not in the labeling config")
            continue
        value = item.get("value", {})
        if kind == "taxonomy":
            for path in value.get("taxonomy", []):
                if tuple(path) not in schema.taxonomy_paths:
                    problems.append(f"value {path[-1]!r} is not in the labeling config")
        elif kind == "choices":
            allowed = schema.choices.get(name, set())
            problems.extend(
                f"{name} {c!r} is not one of the config's choices"
                for c in value.get("choices", [])
                if c not in allowed
            )
    return problems


# --- annotation results back to labels --------------------------------------------------------


@dataclass
class ParsedResult:
    labels: Labels
    notes: str | None = None
    free_values: list[str] = field(default_factory=list)  # names not in the tree, kept, flagged
    flag: str | None = None  # one of FLAGS, or what a config edited on the server offers


def _texts(value: dict) -> list[str]:
    return [part.strip() for text in value.get("text", []) for part in _SPLIT.split(text or "")]


def parse_result(taxonomy: Taxonomy, result: Sequence[dict]) -> ParsedResult:
    """Labels from an annotation's result: taxonomy paths and typed names mapped to nodes."""
    ai: list[str] = []
    human: list[str] = []
    free: list[str] = []
    notes: list[str] = []
    response: ResponseType | None = None
    subjective: bool | None = None
    task: str | None = None
    flag: str | None = None

    def named(name: str, into: list[str]) -> None:
        node = taxonomy.resolve(name)
        if node is None:
            free.append(name)
        into.append(node.name if node is not None else name)

    for item in result:
        name, value = item.get("from_name"), item.get("value", {})
        if name == AI_VALUES:
            for path in value.get("taxonomy", []):
                node = taxonomy.by_path(path) if path else None
                if node is not None and node.level == LEAF_LEVEL:
                    ai.append(node.name)
                elif path:
                    named(path[-1], ai)
        elif name == AI_OTHER:
            for text in _texts(value):
                named(text, ai)
        elif name == HUMAN_VALUES:
            for text in _texts(value):
                named(text, human)
        elif name == RESPONSE_TYPE and value.get("choices"):
            response = ResponseType(value["choices"][0])
        elif name == SUBJECTIVE and value.get("choices"):
            subjective = value["choices"][0] == YES
        elif name == TASK and value.get("choices"):
            task = str(value["choices"][0])
        elif name == NOTES:
            notes.extend(t for t in value.get("text", []) if t and t.strip())
        elif name == FLAG and value.get("choices"):
            flag = str(value["choices"][0])
    labels = Labels(
        ai_values=_unique(ai),
        human_values=_unique(human),
        response_type=response,
        subjective=subjective,
        task=task,
    )
    return ParsedResult(labels=labels, notes="\n".join(notes) or None, free_values=_unique(free),
                        flag=flag)
