"""The labeling config, predictions and results, offline (no server)."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from annotator.models import REQUIRED_FIELDS, Extraction, ResponseType, ValueRef
from annotator.review import interface as lsc
from annotator.taxonomy import LEAF_LEVEL, load_taxonomy


@pytest.fixture(scope="module")
def taxonomy():
    return load_taxonomy()


def _extraction(taxonomy, prompt_id="p1") -> Extraction:
    return Extraction(
        conversation_id="c1",
        prompt_id=prompt_id,
        model="m",
        extractor="test",
        subjective=True,
        response_type=ResponseType.reframing,
        ai_values=[
            taxonomy.value_ref("honesty", evidence="Honesty matters", score=0.9),
            taxonomy.value_ref("loyalty to one's country", score=0.5),
            ValueRef(name="zany whimsy"),
        ],
        human_values=[taxonomy.value_ref("forgiveness", evidence="forgive him")],
    )


def test_top_values_config_lists_exactly_those_values_under_their_paths(taxonomy):
    top = {n.id for n in taxonomy.top_values(300)}
    schema = lsc.parse_config(lsc.label_config(taxonomy, lsc.config_values(taxonomy, 300)))
    assert schema.leaf_ids == top
    assert schema.taxonomy_paths == {tuple(taxonomy.path(i)) for i in top}
    assert schema.controls == {
        "ai_values": "taxonomy", "ai_values_other": "textarea", "human_values": "textarea",
        "response_type": "choices", "subjective": "choices", "task": "choices",
        "notes": "textarea", "flag": "choices",
    }  # fmt: skip
    assert schema.choices["flag"] == set(lsc.FLAGS)
    assert schema.choices["response_type"] == {r.value for r in ResponseType}
    assert len(schema.choices["response_type"]) == 7
    assert schema.choices["subjective"] == {"yes", "no"}


def test_whole_tree_config_reaches_every_released_value(taxonomy):
    xml = lsc.label_config(taxonomy, lsc.config_values(taxonomy, None))
    schema = lsc.parse_config(xml)
    leaves = taxonomy.nodes_at(LEAF_LEVEL)
    assert len(schema.taxonomy_paths) == len(leaves) == 3307
    for leaf in leaves:
        assert tuple(taxonomy.path(leaf)) in schema.taxonomy_paths
    # names with apostrophes are escaped in the XML and come back intact
    assert "loyalty to one&apos;s country" in xml
    assert "loyalty to one's country" in schema.leaf_ids
    # the two clusters named "Environmental stewardship" stay apart, each under its own parent
    twins = [n for n in taxonomy.nodes_at(1) if n.name == "Environmental stewardship"]
    assert len(twins) == 2
    for twin in twins:
        leaf = taxonomy.children(twin.id)[0]
        path = taxonomy.path(leaf)
        assert tuple(path) in schema.taxonomy_paths
        assert taxonomy.by_path(path).parent_id == twin.id


def test_config_is_deterministic_and_adds_predicted_values(taxonomy):
    rare = min(taxonomy.nodes_at(LEAF_LEVEL), key=lambda n: n.pct_total_occurrences or 0)
    values = lsc.config_values(taxonomy, 300, [rare.id, "not a value"])
    assert rare.id in values and "not a value" not in values and len(values) == 301
    assert lsc.label_config(taxonomy, values) == lsc.label_config(taxonomy, set(values))


def test_prediction_shapes_and_validation(taxonomy):
    extraction = _extraction(taxonomy)
    pred = lsc.prediction(taxonomy, extraction, extraction.prompt_id)
    assert pred["model_version"] == "p1"
    assert pred["score"] == pytest.approx(0.7)
    by_name = {r["from_name"]: r["value"] for r in pred["result"]}
    assert by_name["ai_values"]["taxonomy"] == [
        taxonomy.path("honesty"), taxonomy.path("loyalty to one's country")
    ]
    assert by_name["ai_values_other"]["text"] == ["zany whimsy"]
    assert by_name["response_type"]["choices"] == ["reframing"]
    assert by_name["subjective"]["choices"] == ["yes"]
    assert "evidence" not in by_name  # quotes are task data, never an editable result
    assert by_name["human_values"]["text"] == ["forgiveness"]

    needed = lsc.prediction_leaves(taxonomy, extraction)
    assert needed == {"honesty", "loyalty to one's country"}
    fits = lsc.parse_config(lsc.label_config(taxonomy, lsc.config_values(taxonomy, 0, needed)))
    assert lsc.validate(pred, fits) == []
    without = lsc.parse_config(lsc.label_config(taxonomy, {"honesty"}))
    assert lsc.validate(pred, without) == ["value \"loyalty to one's country\" is not in the "
                                           "labeling config"]
    bad = {"result": [{"from_name": "response_type", "value": {"choices": ["meh"]}},
                      {"from_name": "mood", "value": {}}]}
    problems = lsc.validate(bad, fits)
    assert len(problems) == 2 and "'meh'" in problems[0] and "'mood'" in problems[1]


def test_result_maps_back_to_taxonomy_names(taxonomy):
    extraction = _extraction(taxonomy)
    pred = lsc.prediction(taxonomy, extraction, extraction.prompt_id)
    parsed = lsc.parse_result(taxonomy, pred["result"])
    assert parsed.labels.ai_values == ["honesty", "loyalty to one's country", "zany whimsy"]
    assert parsed.labels.human_values == ["forgiveness"]
    assert parsed.labels.response_type is ResponseType.reframing
    assert parsed.labels.subjective is True
    assert parsed.free_values == ["zany whimsy"]

    typed = [
        {"from_name": "ai_values_other", "value": {"text": ["Intellectual-Honesty, Honesty\n"]}},
        {"from_name": "human_values", "value": {"text": ["Loyalty;  new thing"]}},
        {"from_name": "subjective", "value": {"choices": ["no"]}},
        {"from_name": "notes", "value": {"text": ["unsure about the second turn"]}},
        # a path that is not in the tree any more still lands, as its last name
        {"from_name": "ai_values", "value": {"taxonomy": [["Old top", "honesty"]]}},
    ]
    parsed = lsc.parse_result(taxonomy, typed)
    assert parsed.labels.ai_values == ["intellectual honesty", "honesty"]
    assert parsed.labels.human_values == ["loyalty", "new thing"]
    assert parsed.labels.subjective is False and parsed.labels.response_type is None
    assert parsed.notes == "unsure about the second turn"
    assert parsed.free_values == ["new thing"]


def _element(xml: str, tag: str, name: str) -> ElementTree.Element:
    found = [e for e in ElementTree.fromstring(xml).iter(tag) if e.get("name") == name]
    assert len(found) == 1, f"{tag} {name!r} appears {len(found)} times"
    return found[0]


def test_response_type_and_subjective_are_required_with_a_message(taxonomy):
    xml = lsc.label_config(taxonomy, {"honesty"})
    for name in REQUIRED_FIELDS:
        choices = _element(xml, "Choices", name)
        assert choices.get("required") == "true"
        assert choices.get("requiredMessage") == lsc.REQUIRED_MESSAGES[name]
        assert choices.get("choice") == "single-radio"  # one answer, never unticked by a click
    for name in ("ai_values", "ai_values_other", "human_values", "notes"):
        assert ElementTree.fromstring(xml).find(f".//*[@name='{name}']").get("required") is None


def test_guidelines_are_on_the_form_and_in_the_instructions(taxonomy):
    xml = lsc.label_config(taxonomy, {"honesty"})
    choices = {c.get("value"): c for c in _element(xml, "Choices", "response_type")}
    instructions = lsc.instructions_html()
    for r in ResponseType:
        definition = lsc.RESPONSE_HINTS[r]
        assert choices[r.value].get("hint") == definition  # tooltip
        assert definition in choices[r.value].get("html")  # and printed next to the option
        assert f"<li><b>{r.value}</b>: {definition}</li>" in instructions
    assert "acknowledges them and adds other perspectives" in instructions
    assert "e.g. unethical requests, moral nihilism" in instructions
    guide = next(h.get("value") for h in ElementTree.fromstring(xml).iter("Header")
                 if "not a topic" in h.get("value"))
    for term, meaning in lsc.VALUE_GUIDE:
        assert f"{term}: {meaning}." in guide and meaning in instructions
    assert "not a topic" in guide
    # literal text only: a "$" would make Label Studio substitute task data into it
    assert "$" not in guide and "$" not in "".join(c.get("html") for c in choices.values())


def test_task_data_is_shown_only_through_escaping_tags(taxonomy):
    xml = lsc.label_config(taxonomy, {"honesty"})
    root = ElementTree.fromstring(xml)
    fed = {e.tag for e in root.iter() if "$" in (e.get("value") or "")}
    # never Markdown or HyperText (they run or restyle HTML): these render text escaped
    assert fed == {"Paragraphs", "Header"}
    fields = {e.get("value") for e in root.iter("Header") if "$" in e.get("value")}
    assert fields == {"$evidence", "Pre-filled by: $prefilled_by"}
    style = root.find("Style").text
    assert 'span[class*="time--"] { display: none !important; }' in style
    assert 'span[class*="dialoguetext"] { white-space: pre-wrap; }' in style
    turns = root.find(".//View[@className='vd-turns']")
    assert turns is not None and turns.find("Paragraphs").get("name") == "dialogue"


def test_task_data_carries_preview_provenance_and_the_prefill_evidence(taxonomy):
    extraction = _extraction(taxonomy)
    turns = [
        {"role": "system", "text": "be kind"},
        {"role": "user", "text": "My friend   lied.\n\nShould I\tforgive him? " + "x" * 200},
        {"role": "assistant", "text": "Honesty matters."},
    ]
    data = lsc.task_data("c1", turns, "demo", prefill=extraction, prefill_name="values/v1 · 83a3")
    assert list(data)[0] == "preview"  # the Data Manager's first column
    assert data["preview"].startswith("user: My friend lied. Should I forgive him? xxx")
    assert len(data["preview"]) == lsc.PREVIEW_CHARS and data["preview"].endswith("\u2026")
    assert data["prefilled_by"] == "values/v1 · 83a3"
    assert data["evidence"].splitlines() == [
        "honesty: \u201cHonesty matters\u201d",
        "forgiveness (human value): \u201cforgive him\u201d",
    ]
    assert data["turns"] == turns and data["conversation_id"] == "c1"
    short = lsc.task_data("c2", [{"role": "user", "text": "hi"}])
    assert short["preview"] == "user: hi"
    # a blind task: nothing pre-fills it, so no quote may anchor the reviewer either
    assert short["prefilled_by"] == lsc.NOT_PREFILLED == "nothing: label from scratch"
    assert short["evidence"] == lsc.NO_EVIDENCE and "\u201c" not in short["evidence"]
    assert lsc.task_data("c3", [])["preview"] == ""


def test_an_annotation_never_yields_evidence_as_labels(taxonomy):
    extraction = _extraction(taxonomy)
    pred = lsc.prediction(taxonomy, extraction, "values/v1")
    assert not any("\u201c" in str(item["value"]) for item in pred["result"])
    # An annotation made on an older form still holds an evidence text box; a reviewer removed
    # loyalty, but its quote (and the others) must not come back as values.
    result = [
        {"from_name": "ai_values", "value": {"taxonomy": [taxonomy.path("honesty")]}},
        {"from_name": "evidence", "value": {"text": [
            "AI: honesty: \u201cHonesty matters\u201d",
            "AI: loyalty to one's country: \u201cmy country\u201d", "loyalty",
        ]}},
        {"from_name": "response_type", "value": {"choices": ["neutral"]}},
    ]  # fmt: skip
    parsed = lsc.parse_result(taxonomy, result)
    assert parsed.labels.ai_values == ["honesty"]
    assert parsed.labels.human_values == [] and parsed.free_values == []
    assert parsed.notes is None


def test_the_task_list_shows_the_preview_not_raw_json():
    view = lsc.task_list_view()
    for mode in ("explore", "labeling"):
        hidden = view["hiddenColumns"][mode]
        assert {"tasks:data.turns", "tasks:data.evidence"} <= set(hidden)
        assert "tasks:data.preview" not in hidden
        assert "tasks:annotations_results" in hidden  # Label Studio's own defaults kept


def test_pushed_projects_show_the_instructions():
    from annotator.review.sync import _project_settings

    settings = _project_settings(None)
    assert settings["show_instruction"] is True
    assert settings["expert_instruction"] == lsc.instructions_html()


def test_the_flag_and_its_note_are_optional_and_come_back(taxonomy):
    xml = lsc.label_config(taxonomy, {"honesty"})
    flag = _element(xml, "Choices", lsc.FLAG)
    assert flag.get("required") is None  # never blocks Submit
    assert flag.get("choice") == "single"  # a ticked flag can be unticked
    hints = {c.get("value"): c.get("hint") for c in flag.iter("Choice")}
    assert hints == lsc.FLAGS
    assert _element(xml, "TextArea", lsc.NOTES).get("required") is None
    for name, meaning in lsc.FLAGS.items():
        assert f"<li><b>{name}</b>: {meaning}</li>" in lsc.instructions_html()
    result = [
        {"from_name": "flag", "value": {"choices": ["personal data left"]}},
        {"from_name": "notes", "value": {"text": ["turn 3 has a phone number"]}},
    ]
    parsed = lsc.parse_result(taxonomy, result)
    assert parsed.flag == "personal data left"
    assert parsed.notes == "turn 3 has a phone number"
    assert parsed.labels.missing_fields() == ["response_type", "subjective"]
    assert lsc.parse_result(taxonomy, []).flag is None


def test_the_value_picker_has_one_path_for_free_values(taxonomy):
    # The Taxonomy tag of 1.23.2 has no attribute to turn its own "Add" off: the form's style
    # hides it (checked in Chromium by test_labelstudio_form_browser), and the picker is fixed
    # inside the window.
    assert '[class*="taxonomy__add"]' in lsc.STYLE and "display: none" in lsc.STYLE
    assert "position: fixed" in lsc.STYLE
    xml = lsc.label_config(taxonomy, {"honesty"})
    assert _element(xml, "TextArea", lsc.AI_OTHER) is not None
