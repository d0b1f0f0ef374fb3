"""SuperGLUE row -> feature functions on hand-written lines, and split sizes on ../shared/data."""

import json

import pytest

from conftest import REPO, SHARED_DATA, require_shared_data
from prompt_tuning_jax.tasks import metrics
from prompt_tuning_jax.tasks import superglue_rows as sg
from prompt_tuning_jax.tasks.sources import DataError

FIXTURES = REPO / "tests" / "fixtures" / "superglue"


def _rows(name, fn):
  return sg.read_rows(FIXTURES / f"{name}.jsonl", fn)


def test_boolq_pairs_question_with_passage_and_reads_bool_labels():
  rows = _rows("boolq", sg.boolq_row)
  assert rows[0]["text_a"] == "is a tomato botanically a fruit" and rows[0]["text_b"].startswith("Tomato --")
  assert [r["label"] for r in rows] == [1, -1]  # True; no label (test-split form).


def test_cb_three_labels_in_tfds_order():
  rows = _rows("cb", sg.cb_row)
  assert [r["label"] for r in rows] == [sg.CB_LABELS.index("contradiction"), sg.CB_LABELS.index("neutral")] == [1, 2]
  assert rows[1]["text_b"] == "the ferry would leave on time"


def test_copa_gives_two_choice_pairs_with_a_connective():
  rows = _rows("copa", sg.copa_row)
  assert rows[0]["text_a"] == "The glass fell off the table. so" and rows[0]["choices"] == ("It shattered.",
                                                                                             "It floated.")
  assert rows[1]["text_a"] == "The runner was out of breath. because" and rows[1]["label"] == 1


def test_multirc_flattens_to_answer_options_grouped_by_question():
  rows = _rows("multirc", sg.multirc_rows)
  assert [(r["group"], r["answer_idx"], r["label"]) for r in rows] == [(0, 0, 1), (0, 1, 0), (1, 2, 1), (1, 3, 0),
                                                                       (1, 4, 1)]
  assert rows[0]["text_a"].startswith("Ines planted") and rows[2]["text_b"] == "What did the beans climb? The fence"
  # The rows are the metric's targets: one wrong option fails its question but not the other.
  assert metrics.multirc(rows, [1, 0, 1, 0, 0]) == {"em": 50.0, "f1a": pytest.approx(100 * 4 / 5)}


def test_record_one_row_per_candidate_entity_and_best_entity_per_query():
  rows = _rows("record", sg.record_rows)
  assert [r["entity"] for r in rows] == ["Lindqvist Bridge", "Okoye", "Port Arlo", "Wren Island"]  # Sorted, deduped.
  assert [r["label"] for r in rows] == [0, 0, 0, 1] and {r["group"] for r in rows} == {7}
  assert rows[3]["text_b"] == "Ferries to Wren Island will now run only at night."
  assert "@highlight" not in rows[0]["text_a"] and "\n- The Lindqvist Bridge" in rows[0]["text_a"]
  assert rows[0]["answers"] == ("Wren Island",)
  targets, predictions = sg.record_targets_and_predictions(rows, [0.1, 0.3, 2.0, 1.5])
  assert (targets, predictions) == ([("Wren Island",)], ["Port Arlo"])
  assert metrics.record(targets, predictions) == {"em": 0.0, "f1": 0.0}


def test_wic_marks_the_target_word_in_both_sentences():
  (row,) = _rows("wic", sg.wic_row)
  assert row["text_a"] == "She tied a *bow* on the parcel."
  assert row["text_b"] == "The violinist rosined her *bow* before the concert."
  assert row["label"] == 0


def test_wsc_marks_span1_and_span2():
  rows = _rows("wsc", sg.wsc_row)
  assert rows[0]["text_a"] == "The trophy would not fit in *the suitcase* because #it# was too small ."
  assert rows[1]["text_a"] == "*Ayla* thanked Ruth because #she# had helped her ."
  assert [r["label"] for r in rows] == [1, 0]


def test_wsc_tolerates_case_punctuation_and_an_index_one_off(tmp_path):
  row = {"text": "The lake froze, so we skated with it, happily.", "idx": 5, "label": True,
         "target": {"span1_index": 0, "span1_text": "the lake", "span2_index": 5, "span2_text": "it"}}
  path = tmp_path / "wsc.jsonl"
  path.write_text(json.dumps(row) + "\n")
  # "it" is word 6 ("it,"), not 5 ("with", which holds "it" but not as a word).
  assert sg.read_rows(path, sg.wsc_row)[0]["text_a"] == "*The lake* froze, so we skated with #it#, happily."


def test_ax_b_and_ax_g_are_rte_form():
  (axb,) = _rows("AX-b", sg.ax_b_row)
  (axg,) = _rows("AX-g", sg.ax_g_row)
  assert (axb["premise"], axb["hypothesis"], axb["label"], axb["idx"]) == (
      "Every guest brought a dish.", "Some guest brought a dish.", 0, 0)
  assert (axg["text_a"], axg["text_b"], axg["label"]) == ("The nurse said she was tired after her shift.",
                                                          "The nurse was tired.", 0)


def test_bad_rows_name_file_and_line(tmp_path):
  path = tmp_path / "cb.jsonl"
  path.write_text('{"premise": "p", "hypothesis": "h", "label": "neutral"}\n{"premise": "p", "label": "maybe"}\n')
  with pytest.raises(DataError, match=r"cb\.jsonl:2: missing field\(s\) \['hypothesis'\]"):
    sg.read_rows(path, sg.cb_row)
  path.write_text('{"premise": "p", "hypothesis": "h", "label": "maybe"}\n')
  with pytest.raises(DataError, match=r"cb\.jsonl:1: label 'maybe' is not one of"):
    sg.read_rows(path, sg.cb_row)
  path.write_text('{"word": "w", "sentence1": "a w", "sentence2": "w", "start1": 2, "end1": 9, "start2": 0, '
                  '"end2": 1}\n')
  with pytest.raises(DataError, match=r"cb\.jsonl:1: offsets \[2, 9\) lie outside 'a w'"):
    sg.read_rows(path, sg.wic_row)


@pytest.mark.parametrize("relative, fn, size", [
    ("superglue/wsc/train.jsonl", sg.wsc_row, 554),
    ("superglue/wsc/val.jsonl", sg.wsc_row, 104),
    ("superglue/wsc/test.jsonl", sg.wsc_row, 146),
    ("superglue/boolq/val.jsonl", sg.boolq_row, 3270),
    ("superglue/wic/val.jsonl", sg.wic_row, 638),
    ("superglue/multirc/val.jsonl", sg.multirc_rows, 4848),
    ("superglue/rte/AX-b.jsonl", sg.ax_b_row, 1104),
    ("superglue/rte/AX-g.jsonl", sg.ax_g_row, 356),
])
def test_shared_data_sizes(relative, fn, size):
  require_shared_data(relative)
  rows = sg.read_rows(SHARED_DATA / relative, fn)
  assert len(rows) == size
  if fn is sg.multirc_rows:
    assert len({r["group"] for r in rows}) == 953
  if fn is sg.wsc_row:  # Both spans are marked exactly once in every text.
    assert all(r["text_a"].count("*") == 2 and r["text_a"].count("#") == 2 for r in rows)
  if fn is sg.wic_row:  # The marks wrap whole words (one sentence has a '*' of its own: "x * I = x").
    for r in rows:
      for k, marked in (("1", r["text_a"]), ("2", r["text_b"])):
        start, end = r[f"start{k}"], r[f"end{k}"]
        assert marked[start] == marked[end + 1] == "*" and marked[start + 1:end + 1].isalpha()
        assert marked[:start] + marked[start + 1:end + 1] + marked[end + 2:] == r[f"sentence{k}"]


def test_shared_wsc_spans_with_an_off_index_and_a_newline():
  require_shared_data("superglue/wsc/train.jsonl", "superglue/wsc/val.jsonl")
  val = {r["idx"]: r for r in sg.read_rows(SHARED_DATA / "superglue/wsc/val.jsonl", sg.wsc_row)}
  assert "might want to use #it# , but" in val[42]["text_a"]  # span2_index says 30 ("use"); "it" is word 31.
  train = sg.read_rows(SHARED_DATA / "superglue/wsc/train.jsonl", sg.wsc_row)
  password = [r["text_a"] for r in train if "willow-towered" in r["span1_text"]]
  assert len(password) == 2 and all('" *willow-towered Canopy Huntertropic wrestles* "' in t for t in password)
