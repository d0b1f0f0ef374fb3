"""Metrics equal their references (sklearn, seqeval, the SQuAD script's rules) on hand-computed and random cases."""

import functools
import random

import numpy as np
import pytest
from seqeval import metrics as seqeval_metrics
from sklearn.metrics import f1_score

from prompt_tuning_jax.tasks import metrics


def test_accuracy_and_majority_baseline_unchanged():
  assert metrics.accuracy([0, 1, 1, 0], [0, 1, 0, 0]) == {"accuracy": 75.0}
  assert metrics.majority_class_accuracy([1, 1, 0, 1]) == 75.0


def test_f1_macro_hand_computed_with_an_absent_class():
  # Class 0: P 1, R 1/2 -> 2/3; class 1: P 1/2, R 1 -> 2/3; class 2 occurs nowhere -> 0.
  got = metrics.f1_macro([0, 0, 1], [0, 1, 1], labels=range(3))
  assert got["f1_macro"] == pytest.approx(100 * 4 / 9)


def test_f1_macro_equals_sklearn_zero_division_0():
  rng = np.random.default_rng(0)
  for n in (1, 2, 5, 40):
    for _ in range(20):
      targets, predictions = rng.integers(0, 3, n), rng.integers(0, 3, n)
      want = 100 * f1_score(targets, predictions, labels=[0, 1, 2], average="macro", zero_division=0)
      assert metrics.f1_macro(targets, predictions, labels=[0, 1, 2])["f1_macro"] == pytest.approx(want)


def test_f1_macro_binds_with_partial_for_seqio():
  cb_f1 = functools.partial(metrics.f1_macro, labels=range(3))
  assert cb_f1(targets=[2, 1, 0], predictions=[2, 1, 0]) == {"f1_macro": 100.0}


def test_multirc_exact_match_per_question_and_f1_over_all_options():
  targets = [{"group": "q1", "label": 1}, {"group": "q1", "label": 0}, {"group": "q1", "label": 1},
             {"group": "q2", "label": 0}, {"group": "q2", "label": 1}]
  predictions = [1, 0, 1, 1, 1]
  got = metrics.multirc(targets, predictions)
  assert got["em"] == 50.0  # q1 all right, q2 one option wrong.
  assert got["f1a"] == pytest.approx(100 * 2 * 3 / (2 * 3 + 1 + 0))  # tp 3, fp 1, fn 0.


def test_multirc_invalid_prediction_counts_as_wrong():
  targets = [{"group": 7, "label": 1}, {"group": 7, "label": 0}]
  assert metrics.multirc(targets, [-1, 2]) == metrics.multirc(targets, [0, 1])


@pytest.mark.parametrize("text, normalised", [
    ("The  Eiffel-Tower!", "eiffeltower"),
    ("an apple, a pear and THE fig", "apple pear and fig"),
    ("theatre anthem", "theatre anthem"),  # Articles only as whole words.
    ("  Café\tau lait. ", "café au lait"),
])
def test_squad_normalisation(text, normalised):
  assert metrics.normalize_answer(text) == normalised


def test_squad_em_and_f1_max_over_golds():
  targets = [["Denver Broncos", "The Denver Broncos"], ["in the 1990s", "1990s"], ["Paris"]]
  predictions = ["denver broncos", "the late 1990s", "London"]
  got = metrics.squad(targets, predictions)
  # Q2: vs "1990s": P 1/2, R 1 -> 2/3 (vs "in the 1990s": P 1/2, R 1/2 -> 1/2).
  assert got["em"] == pytest.approx(100 / 3)
  assert got["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0) / 3)


def test_squad_v1_needs_golds_and_scores_an_empty_normalising_gold_as_the_v1_script():
  with pytest.raises(ValueError, match="question 0 has no gold answer.*squad_v2"):
    metrics.squad([[]], [""])
  # v1.1: "the" and "an" both normalise to "", so EM is 1 but F1 (no shared token) is 0.
  assert metrics.squad([["the"]], ["an"]) == {"em": 100.0, "f1": 0.0}


def test_squad_v2_no_answer_scores_one_only_for_an_empty_prediction():
  assert metrics.squad_v2([[], []], ["", "something"]) == {"em": 50.0, "f1": 50.0}
  assert metrics.squad_v2([["Paris"]], [""]) == {"em": 0.0, "f1": 0.0}
  # v2.0 drops golds that normalise to ""; with none left the question counts as unanswerable.
  assert metrics.squad_v2([["the"]], ["an"]) == {"em": 100.0, "f1": 100.0}
  assert metrics.squad_v2([["the", "Paris"]], ["an"]) == {"em": 0.0, "f1": 0.0}
  targets, predictions = [["Denver Broncos"], ["in the 1990s", "1990s"]], ["denver broncos", "the late 1990s"]
  assert metrics.squad_v2(targets, predictions) == metrics.squad(targets, predictions)


def test_record_is_squad_scoring_of_the_chosen_entity():
  assert metrics.record([["Barack Obama", "Obama"]], ["obama"]) == {"em": 100.0, "f1": 100.0}


def test_entity_f1_hand_computed_conlleval_chunking():
  gold = [["B-PER", "I-PER", "O", "B-LOC"], ["I-ORG", "I-ORG", "O"]]
  # Sentence 2 gold: I-ORG without B- starts an ORG entity over words 0-1.
  pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "I-ORG", "I-LOC"]]
  got = metrics.entity_f1(gold, pred)
  # Gold spans: PER 0-1, LOC 3, ORG 0-1 (3). Predicted: PER 0-1, ORG 3, ORG 0-1, LOC 2 (4). Right: 2.
  assert got["precision"] == pytest.approx(50.0)
  assert got["recall"] == pytest.approx(100 * 2 / 3)
  assert got["f1"] == pytest.approx(100 * 2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_entity_f1_equals_seqeval_default_mode_on_random_tags():
  rng = random.Random(0)
  tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-creative-work", "I-creative-work"]
  for _ in range(50):
    gold, pred = [], []
    for _ in range(rng.randint(1, 4)):
      n = rng.randint(1, 8)
      gold.append([rng.choice(tags) for _ in range(n)])
      pred.append([rng.choice(tags) for _ in range(n)])
    got = metrics.entity_f1(gold, pred)
    assert got["precision"] == pytest.approx(100 * seqeval_metrics.precision_score(gold, pred, zero_division=0))
    assert got["recall"] == pytest.approx(100 * seqeval_metrics.recall_score(gold, pred, zero_division=0))
    assert got["f1"] == pytest.approx(100 * seqeval_metrics.f1_score(gold, pred, zero_division=0))


def test_entity_f1_rejects_mismatched_lengths():
  with pytest.raises(ValueError, match="sentence 0 has 2 gold tags and 1 predicted"):
    metrics.entity_f1([["O", "O"]], [["O"]])


def test_srl_f1_leaves_out_the_predicate_span():
  gold = [["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "I-ARG1", "O"]]
  pred = [["B-ARG0", "I-ARG0", "B-V", "B-ARG1", "O", "B-ARGM-TMP"]]
  got = metrics.srl_f1(gold, pred)
  # Gold arguments: ARG0 0-1, ARG1 3-4. Predicted: ARG0 0-1, ARG1 3, ARGM-TMP 5. Right: 1. V never counts.
  assert got["precision"] == pytest.approx(100 / 3)
  assert got["recall"] == pytest.approx(50.0)
  assert metrics.srl_f1([["B-V", "O"]], [["O", "B-V"]])["f1"] == 0.0  # Nothing to score: 0, not an error.
  assert metrics.srl_f1(gold, gold)["f1"] == 100.0
