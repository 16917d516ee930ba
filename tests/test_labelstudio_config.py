"""The labeling config, predictions and results, offline (no server)."""

from __future__ import annotations

import pytest

from annotator import labelstudio_config as lsc
from annotator.models import Extraction, ResponseType, ValueRef
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
        "ai_values": "taxonomy", "ai_values_other": "textarea", "evidence": "textarea",
        "human_values": "textarea", "response_type": "choices", "subjective": "choices",
        "notes": "textarea",
    }  # fmt: skip
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
    assert any("Honesty matters" in line for line in by_name["evidence"]["text"])
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
