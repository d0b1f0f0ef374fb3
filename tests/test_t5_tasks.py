"""T5's text-to-text tasks: exact input and target strings on hand-written files in each data set's original
format (tests/fixtures/t5_tasks, MRQA from tests/fixtures/mrqa_sample.jsonl), T5's postprocessing and metrics on
hand-computed cases, and the sizes of the real data sets in ../shared/data where they are present."""

import ast
import gzip
import json
import re
import shutil

import pytest
import seqio
import tensorflow_datasets as tfds

from conftest import REPO
from prompt_tuning_jax import tasks
from prompt_tuning_jax.tasks import loading, registry, t5_metrics, t5_qa, text_to_text
from prompt_tuning_jax.data.text_batching import TextExamples
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary
from prompt_tuning_jax.tasks.extractive_qa import MRQA_IN_DOMAIN, MRQA_OUT_OF_DOMAIN
from prompt_tuning_jax.tasks.sources import DataError

FIXTURES = REPO / "tests" / "fixtures"
VOCABULARY = sentencepiece_vocabulary(FIXTURES / "t5_tiny_spm.model", 100)
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """tests/fixtures/t5_tasks plus the MRQA sample as every MRQA set's file."""
  root = tmp_path_factory.mktemp("t5_tasks") / "data"
  shutil.copytree(FIXTURES / "t5_tasks", root)
  for split, file in [("train", f) for _, _, f in MRQA_IN_DOMAIN] + [("dev", f) for _, _, f in
                                                                    MRQA_IN_DOMAIN + MRQA_OUT_OF_DOMAIN]:
    path = root / "mrqa" / split / f"{file}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress((FIXTURES / "mrqa_sample.jsonl").read_bytes()))
  return root


def _load(name, split, data_dir):
  return loading.load_text_examples(name, split, {"inputs": 512, "targets": 64}, data_dir=data_dir,
                                    vocabulary=VOCABULARY)


MULTIRC_PARAGRAPH = "Sent 1: Ines planted beans in May. Sent 2: By July they climbed the fence. "
RECORD_INPUTS = ("record query: Ferries from @placeholder will now run only at night. entities: Lindqvist Bridge, "
                 "Okoye, Port Arlo, Wren Island passage: Harbour town opens new bridge. The Lindqvist Bridge links "
                 "Port Arlo to Wren Island. Mayor Okoye cut the ribbon")
SQUAD_CONTEXT = "context: The U . S . flag has 50 stars ( one per state ) ; it was adopted in 1960 . "
MRQA_CONTEXT_1 = ("context: [ PAR ] [ TLE ] Lake Peipus [ SEP ] Lake Peipus lies on the border between Estonia and "
                  "Russia . Its area is 3 , 555 km² . ")
MRQA_CONTEXT_2 = "context: [ PAR ] Halley ' s Comet returns every 75–79 years ; it was last seen in 1986 . "
MRQA = [(f"question: Which countries border Lake Peipus ? {MRQA_CONTEXT_1}", "Estonia and Russia"),
        (f"question: How large is the lake ? {MRQA_CONTEXT_1}", "3 , 555 km²"),
        (f"question: When was the comet last seen ? {MRQA_CONTEXT_2}", "1986")]

# (task, split) -> every (inputs, targets) in order, written by hand from the fixture files.
EXPECTED = {
    ("super_glue_boolq_v102", "validation"): [
        ("boolq passage: Tomato -- The tomato is a berry, a kind of fruit. question: is a tomato a fruit", "True"),
        ("boolq passage: Penguin -- Penguins live in the Southern Hemisphere. question: do penguins live at the "
         "north pole", "False")],
    ("super_glue_boolq_v102", "test"): [("boolq passage: Ice -- Ice is frozen water. question: is ice cold", "<unk>")],
    ("super_glue_cb_v102", "validation"): [
        ("cb hypothesis: the kettle had boiled premise: Mara said the kettle had boiled. I doubt it had.",
         "contradiction"),
        ("cb hypothesis: the ferry had left premise: Jon knew the ferry had left.", "entailment"),
        ("cb hypothesis: the ferry would leave premise: Did Jon think the ferry would leave?", "neutral")],
    ("super_glue_copa_v102", "validation"): [
        ("copa choice1: It shattered. choice2: It floated. premise: The glass fell off the table. question: effect",
         "choice1"),
        ("copa choice1: She had slept late. choice2: She had sprinted uphill. premise: The runner was out of breath. "
         "question: cause", "choice2")],
    ("super_glue_multirc_v102", "validation"): [
        (f"multirc question: When did Ines plant beans? answer: In May paragraph: {MULTIRC_PARAGRAPH}", "True"),
        (f"multirc question: When did Ines plant beans? answer: In July paragraph: {MULTIRC_PARAGRAPH}", "False"),
        (f"multirc question: What did the beans climb? answer: The fence paragraph: {MULTIRC_PARAGRAPH}", "True"),
        (f"multirc question: What did the beans climb? answer: A wall paragraph: {MULTIRC_PARAGRAPH}", "False"),
        (f"multirc question: What did the beans climb? answer: the garden fence paragraph: {MULTIRC_PARAGRAPH}",
         "True")],
    ("super_glue_record_v102", "validation"): [(RECORD_INPUTS, "Port Arlo"), (RECORD_INPUTS, "Wren Island")],
    ("super_glue_record_v102", "test"): [
        ("record query: @placeholder is hot. entities: Kiln passage: Kiln opens. A potter fires bowls", "<unk>")],
    ("super_glue_rte_v102", "validation"): [("rte hypothesis: A cat sat. premise: The cat sat on the mat.", "entailment"),
                                            ("rte hypothesis: The dog ran. premise: The dog slept.", "not_entailment")],
    ("super_glue_rte_v102", "test"): [("rte hypothesis: It was dry. premise: Rain fell all day.", "<unk>")],
    ("glue_rte_v002", "validation"): [("rte sentence1: The cat sat on the mat. sentence2: A cat sat.", "entailment"),
                                      ("rte sentence1: The dog slept. sentence2: The dog ran.", "not_entailment")],
    ("super_glue_wic_v102", "validation"): [
        ("wic sentence1: She tied a bow on the parcel. sentence2: The violinist rosined her bow. word: bow", "False"),
        ("wic sentence1: I run daily. sentence2: They run fast. word: run", "True")],
    # Training keeps the correct referents only; validation keeps both (the second's index is one word early).
    ("super_glue_wsc_v102", "train"): [
        ("wsc: The trophy would not fit in the suitcase because *it* was too small .", "the suitcase")],
    ("super_glue_wsc_v102", "validation"): [("wsc: Ayla thanked Ruth because *she* had helped her .", "Ruth"),
                                            ("wsc: Ayla thanked Ruth because *she* had helped her .", "Ayla")],
    ("super_glue_wsc_fixed_v102", "validation"): [("wsc text: Ayla thanked * Ruth * because # she # had helped her .",
                                                   "True"),
                                                  ("wsc text: * Ayla * thanked Ruth because # she # had helped her .",
                                                   "False")],
    ("super_glue_axb_v102", "test"): [
        ("rte hypothesis: Some guest brought a dish. premise: Every guest brought a dish.", "entailment"),
        ("rte hypothesis: Every guest brought a dish. premise: Some guest brought a dish.", "not_entailment")],
    ("super_glue_axg_v102", "test"): [
        ("rte hypothesis: The nurse was tired. premise: The nurse said she was tired after her shift.", "entailment"),
        ("rte hypothesis: The patient was tired. premise: The nurse said she was tired after her shift.",
         "not_entailment")],
    ("squad_v010_allanswers", "validation"): [(f"question: Whose flag has 50 stars ? {SQUAD_CONTEXT}", "The U . S . "),
                                              (f"question: When was it adopted ? {SQUAD_CONTEXT}", "1960")],
    ("taskless_super_glue_rte_v102", "validation"): [("hypothesis: A cat sat. premise: The cat sat on the mat.",
                                                      "entailment"),
                                                     ("hypothesis: The dog ran. premise: The dog slept.",
                                                      "not_entailment")],
    ("taskless_super_glue_wsc_v102", "validation"): [("Ayla thanked Ruth because *she* had helped her .", "Ruth"),
                                                     ("Ayla thanked Ruth because *she* had helped her .", "Ayla")],
}
EXPECTED |= {(f"mrqa_{config}_v100", "validation"): MRQA for config in t5_qa.MRQA_IN_DOMAIN + t5_qa.MRQA_OUT_OF_DOMAIN}
EXPECTED |= {(f"mrqa_{config}_v100", "train"): MRQA for config in t5_qa.MRQA_IN_DOMAIN}


@pytest.mark.parametrize("name, split", sorted(EXPECTED))
def test_inputs_and_targets_are_t5s(name, split, data_dir):
  examples = _load(name, split, data_dir)
  assert list(zip(examples.inputs_text, examples.targets_text)) == EXPECTED[name, split]
  assert examples.inputs[0][-1] == VOCABULARY.eos_id
  assert examples.targets[0].tolist() == VOCABULARY.encode(examples.targets_text[0]) + [VOCABULARY.eos_id]


def test_every_task_is_registered_with_seqio_and_taskless_drops_only_the_task_name(data_dir):
  superglue = [n for n in text_to_text.SCORING if n.startswith("super_glue_")]
  assert len(superglue) == 11 and all(f"taskless_{n}" in text_to_text.SCORING for n in superglue)
  assert {name for name, _ in EXPECTED} | {f"taskless_{n}" for n in superglue} | {
      "squad_v010_allanswers_dev_split"} == set(text_to_text.SCORING)
  for name in text_to_text.SCORING:
    assert name in seqio.TaskRegistry.names()
  for name in ("super_glue_cb_v102", "super_glue_multirc_v102", "super_glue_record_v102", "super_glue_axb_v102"):
    full = _load(name, "validation" if "ax" not in name else "test", data_dir)
    taskless = _load(f"taskless_{name}", "validation" if "ax" not in name else "test", data_dir)
    assert taskless.inputs_text == [text.split(" ", 1)[1] for text in full.inputs_text]
    assert taskless.targets_text == full.targets_text
  assert text_to_text.TARGET_STRINGS["super_glue_copa_v102"] == ("choice1", "choice2")
  assert not {"super_glue_record_v102", "super_glue_wsc_v102", "squad_v010_allanswers"} & set(text_to_text.TARGET_STRINGS)


def test_mixtures():
  proportional = seqio.get_mixture_or_task("super_glue_v102_proportional")
  assert sorted(t.name for t in proportional.tasks) == [f"super_glue_{t}_v102" for t in (
      "boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc")]
  transfer = seqio.get_mixture_or_task("squad_to_mrqa")
  assert sorted(t.name for t in transfer.tasks) == sorted(["squad_v010_allanswers"] + [
      f"mrqa_{c}_v100" for c in ("bio_asq", "drop", "duo_rc", "race", "relation_extraction", "textbook_qa")])
  assert sorted(t.name for t in seqio.get_mixture_or_task("squad_to_drop").tasks) == ["mrqa_drop_v100",
                                                                                      "squad_v010_allanswers"]
  assert registry.SPECS["mrqa_drop_v100"].source.splits == ("validation",)


# ---- Postprocessing and metrics on hand-computed cases.


def _examples(targets, **meta):
  return TextExamples([None] * len(targets), [None] * len(targets), [""] * len(targets), list(targets), None,
                      meta=meta)


def test_unknown_strings_are_wrong_labels():
  assert t5_metrics.labels_of(["True", "False", "maybe", ""], ("False", "True")) == [1, 0, -1, -1]
  scores = text_to_text.score_strings("super_glue_boolq_v102", _examples(["False", "True", "True"]),
                                      ["False", "maybe", "True"])
  assert scores == {"accuracy": pytest.approx(200 / 3)}


def test_cb_accuracy_and_macro_f1():
  examples = _examples(["entailment", "contradiction", "neutral"])
  # entailment: tp 1, fp 1 -> F1 2/3; contradiction and neutral: F1 0 ("xyz" is no class).
  scores = text_to_text.score_strings("super_glue_cb_v102", examples, ["entailment", "entailment", "xyz"])
  assert scores == {"accuracy": pytest.approx(100 / 3), "f1_macro": pytest.approx(200 / 9)}


def test_multirc_exact_match_per_question_and_f1_over_answers():
  examples = _examples(["True", "False", "True", "False", "True"], group=["4-0", "4-0", "4-1", "4-1", "4-1"])
  # Question 4-0 all right; 4-1 has an unknown string (counted as the wrong class, 1) and a miss.
  scores = text_to_text.score_strings("super_glue_multirc_v102", examples, ["True", "False", "True", "junk", "False"])
  # All answers: tp 2, fp 1 (the junk), fn 1 -> F1 = 4 / 6.
  assert scores == {"em": 50.0, "f1a": pytest.approx(400 / 6)}


def test_record_scores_each_query_once_against_all_answers():
  answers = [["Port Arlo", "Wren Island"]] * 2 + [["Okoye"]]
  examples = _examples(["Port Arlo", "Wren Island", "Okoye"], group=["3-7", "3-7", "3-8"], answers=answers)
  # Query 3-7: its first row, "the Wren" -> EM 0, F1 max(0, 2 * 1 * 0.5 / 1.5); 3-8: "Mayor Okoye" -> F1 2 / 3.
  scores = text_to_text.score_strings("super_glue_record_v102", examples, ["the Wren", "Port Arlo", "Mayor Okoye"])
  assert scores == {"em": 0.0, "f1": pytest.approx(100 * (2 / 3 + 2 / 3) / 2)}
  assert text_to_text.score_strings("super_glue_record_v102", examples, ["wren island", "", "okoye"]) == {
      "em": 100.0, "f1": 100.0}


def test_squad_max_over_all_answers_with_t5_normalisation():
  examples = _examples(["The U . S . ", "1960"], answers=[["The U . S . ", "U . S . "], ["1960"]])
  scores = text_to_text.score_strings("squad_v010_allanswers", examples, ["u . s .", "in 1960"])
  assert scores == {"em": 50.0, "f1": pytest.approx((100 + 100 * 2 * 1 * 0.5 / 1.5) / 2)}


def test_axb_matthews_and_axg_accuracy():
  examples = _examples(["entailment", "entailment", "not_entailment", "not_entailment"])
  predicted = ["entailment", "entailment", "not_entailment", "??"]  # ?? counts as entailment (wrong).
  # tp 1, tn 2, fp 0, fn 1: (1 * 2 - 0) / sqrt(1 * 2 * 2 * 3).
  assert text_to_text.score_strings("super_glue_axb_v102", examples, predicted) == {
      "matthews_corr": pytest.approx(100 * 2 / 12 ** 0.5)}
  sklearn = pytest.importorskip("sklearn.metrics")
  assert 100 * sklearn.matthews_corrcoef([0, 0, 1, 1], [0, 0, 1, 0]) == pytest.approx(100 * 2 / 12 ** 0.5)
  assert text_to_text.score_strings("super_glue_axg_v102", examples, predicted) == {"accuracy": 75.0}


@pytest.mark.parametrize("prediction, referent, expected", [
    ("suitcase", "the suitcase", 1), ("The Suitcase", "suitcase", 1), ("fuzzy bunny", "bunny", 1),
    ("Bob", "Bob's hat", 0), ("Ayla", "Ruth", 0), ("", "Ruth", -1), ("the", "Ruth", -1)])
def test_wsc_simple_referent_match(prediction, referent, expected):
  assert t5_metrics.wsc_simple_label(prediction, referent) == expected


def test_wsc_scores_the_referent_against_the_label():
  examples = _examples(["Ruth", "Ayla"], label=[1, 0])
  assert text_to_text.score_strings("super_glue_wsc_v102", examples, ["ruth", "Ruth"]) == {"accuracy": 100.0}
  # Decoding a label-0 row's candidate (not the referent) is wrong; an empty answer is never right.
  assert text_to_text.score_strings("super_glue_wsc_v102", examples, ["", "Ayla"]) == {"accuracy": 0.0}


def test_score_strings_on_loaded_fixture_examples(data_dir):
  multirc = _load("super_glue_multirc_v102", "validation", data_dir)
  assert multirc.meta["group"] == ["4-0", "4-0", "4-1", "4-1", "4-1"]
  assert text_to_text.score_strings("super_glue_multirc_v102", multirc, multirc.targets_text) == {"em": 100.0,
                                                                                                   "f1a": 100.0}
  squad = _load("squad_v010_allanswers", "validation", data_dir)
  assert squad.meta["answers"] == [["The U . S . ", "U . S . "], ["1960"]]
  # T5 pads the answers' punctuation: "U.S." normalises to "us", the answers to "u s" (no match).
  assert text_to_text.score_strings("squad_v010_allanswers", squad, ["U.S.", "1960"]) == {"em": 50.0, "f1": 50.0}
  with pytest.raises(ValueError, match="1 predictions for 2 examples"):
    text_to_text.score_strings("squad_v010_allanswers", squad, ["U.S."])


def test_seqio_postprocess_and_metric_score_as_score_strings(data_dir):
  """What t5x's evaluation calls: the seqio task's postprocess_fn on each example, then its metric_fns."""
  task = tasks.get_task("super_glue_multirc_v102", data_dir=data_dir, vocabulary=VOCABULARY)
  rows = list(tfds.as_numpy(task.get_dataset({"inputs": 512, "targets": 8}, split="validation", shuffle=False,
                                             use_cached=False)))
  targets = [task.postprocess_fn(r["targets_pretokenized"].decode(), example=r, is_target=True) for r in rows]
  predicted = [task.postprocess_fn(p, example=r) for p, r in zip(["True", "False", "True", "junk", "False"], rows)]
  (metric,) = task.metric_fns
  assert metric(targets, predicted) == {"em": 50.0, "f1a": pytest.approx(400 / 6)}


# ---- Sizes of the real data sets (../shared/data).

COUNTS = [("super_glue_rte_v102", "validation", 277), ("super_glue_boolq_v102", "validation", 3270),
          ("super_glue_wic_v102", "validation", 638), ("super_glue_multirc_v102", "validation", 4848),
          ("super_glue_wsc_v102", "validation", 104), ("super_glue_wsc_v102", "train", 259),
          ("super_glue_axb_v102", "test", 1104), ("super_glue_axg_v102", "test", 356),
          ("squad_v010_allanswers", "validation", 10570)]


@pytest.mark.parametrize("name, split, count", COUNTS)
def test_real_data_sizes(name, split, count):
  if not SHARED.exists():
    pytest.skip(f"the real data ({SHARED}) is not on this machine")
  rows = registry.SPECS[name].source.at(SHARED).rows(split)
  assert len(rows) == count
  assert all(row["targets"] for row in rows[:50])


def test_t5_gin_files_name_registered_tasks_and_their_labels():
  files = sorted((REPO / "gin" / "t5").glob("*.gin"))
  assert len(files) >= 13
  for path in files:
    text = path.read_text()
    assert text.startswith("# Provides: ") and "\n# Requires: " in text, path
    values = dict(line.split(" = ", 1) for line in text.splitlines() if " = " in line and not line.startswith("#"))
    task = ast.literal_eval(values["MIXTURE_OR_TASK_NAME"])
    assert task in text_to_text.SCORING, path
    assert set(ast.literal_eval(values["TASK_FEATURE_LENGTHS"])) == {"inputs", "targets"}
    labels = ast.literal_eval(values.get("CLASS_LABELS", "None"))
    assert labels is None or tuple(labels) == text_to_text.TARGET_STRINGS[task], path


def test_a_wsc_pronoun_missing_from_its_text_is_a_data_error(tmp_path):
  row = {"text": "Ayla thanked Ruth .", "target": {"span1_index": 0, "span1_text": "Ayla", "span2_index": 2,
                                                   "span2_text": "she"}, "idx": 5, "label": True}
  (tmp_path / "superglue" / "wsc").mkdir(parents=True)
  (tmp_path / "superglue" / "wsc" / "val.jsonl").write_text(json.dumps(row) + "\n")
  source = registry.SPECS["super_glue_wsc_v102"].source.at(tmp_path)
  with pytest.raises(DataError, match="^" + re.escape(
      f"{tmp_path / 'superglue/wsc/val.jsonl'}:1: example 5: pronoun (span2_text) 'she' is not a word of the text "
      "'Ayla thanked Ruth .'; correct span2_text or remove the row.")):
    source.rows("validation")
