"""T5 text-to-text tasks and the SentencePiece vocabulary: formats, ids, batches, label-based prompt init."""

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import REPO, write_tiny_data
from prompt_tuning_jax import tasks
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.prompts import initializers
from prompt_tuning_jax.tasks import text_to_text  # pylint: disable=unused-import  (registers the tasks)
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary, wordpiece_vocabulary
from prompt_tuning_jax.tasks import loading

SPM = REPO / "tests" / "fixtures" / "t5_tiny_spm.model"
T5_VOCABULARY = sentencepiece_vocabulary(SPM, 100)  # The tiny T5's vocabulary, passed explicitly below.


@pytest.fixture
def t5_data(tmp_path):
  return write_tiny_data(tmp_path)


def test_fixture_vocabulary_has_t5_ids_and_fits_the_tiny_model():
  config = json.loads((REPO / "tests" / "goldens" / "t5_tiny" / "config.json").read_text())
  assert (T5_VOCABULARY.pad_id, T5_VOCABULARY.eos_id, T5_VOCABULARY.unk_id) == (0, 1, 2)
  assert T5_VOCABULARY.vocab_size == config["vocab_size"] == 412 + 100
  assert T5_VOCABULARY.encode("<extra_id_0>") == [511]  # seqio counts extra ids down from the top
  for text in ("entailment", "not_entailment", "rte sentence1: A cat sat."):
    assert T5_VOCABULARY.decode(T5_VOCABULARY.encode(text)) == text


def test_vocabulary_follows_the_configured_model_file(tmp_path):
  other = tmp_path / "copy.model"
  other.write_bytes(SPM.read_bytes())
  configured = sentencepiece_vocabulary(other, 10)
  assert configured.vocab_size == 412 + 10 and configured.sentencepiece_model_file == str(other)
  assert sentencepiece_vocabulary(SPM, 100).vocab_size == 512
  assert sentencepiece_vocabulary(SPM, 100) is T5_VOCABULARY and configured != T5_VOCABULARY


@pytest.mark.parametrize("name, expected", [
    ("super_glue_rte_v102", "rte hypothesis: A dog sat. premise: The good cat sat on the mat."),
    ("taskless_super_glue_rte_v102", "hypothesis: A dog sat. premise: The good cat sat on the mat."),
    ("glue_rte_v002", "rte sentence1: The good cat sat on the mat. sentence2: A dog sat.")])
def test_rte_in_t5_format(name, expected, t5_data):
  task = tasks.get_task(name, data_dir=t5_data, vocabulary=T5_VOCABULARY)
  ds = task.get_dataset({"inputs": 64, "targets": 8}, split="validation", shuffle=False, use_cached=False)
  rows = list(tfds.as_numpy(ds))
  assert len(rows) == 10
  first = rows[0]
  assert first["inputs_pretokenized"].decode() == expected
  assert first["targets_pretokenized"].decode() == "not_entailment" and rows[1]["targets_pretokenized"] == b"entailment"
  assert first["inputs"][-1] == 1 and first["targets"][-1] == 1  # EOS appended
  assert first["targets"].tolist() == T5_VOCABULARY.encode("not_entailment") + [1]


def test_batches_shift_targets_and_pad_to_buckets(t5_data):
  examples = loading.load_text_examples("super_glue_rte_v102", "train", {"inputs": 64, "targets": 8},
                                             data_dir=t5_data, vocabulary=T5_VOCABULARY)
  batches = text_batching.TrainBatches(examples, 8, {"inputs": 64, "targets": 8}, seed=0)
  batch = batches.batch(3)
  np.testing.assert_array_equal(batches.batch(3)["encoder_input_tokens"], batch["encoder_input_tokens"])
  assert batch["encoder_input_tokens"].shape[1] in text_batching.feature_buckets({"inputs": 64, "targets": 8})["inputs"]
  targets = batch["decoder_target_tokens"]
  assert targets.shape == (8, 8)
  np.testing.assert_array_equal(batch["decoder_input_tokens"][:, 1:], targets[:, :-1])
  assert (batch["decoder_input_tokens"][:, 0] == 0).all()
  np.testing.assert_array_equal(batch["decoder_loss_weights"], targets > 0)
  candidates = text_batching.candidate_arrays(T5_VOCABULARY, ["entailment", "not_entailment"], 8)
  assert candidates["candidate_targets"].shape == (2, 5) and (candidates["candidate_targets"][:, -1] == [0, 1]).all()


def test_class_label_prompt_init_uses_the_t5_vocabulary():
  embeddings = np.random.default_rng(0).normal(size=(512, 8)).astype(np.float32)
  rows = initializers.class_labels(["entailment", "not_entailment"], vocabulary=T5_VOCABULARY)(
      np.zeros(2, np.uint32), (4, 8), embeddings)
  ids = T5_VOCABULARY.encode("not_entailment")
  np.testing.assert_allclose(rows[1], embeddings[ids].mean(0), atol=1e-6)
  # An encoder run gives its own vocabulary: no T5 run before it changes what that one is.
  assert type(wordpiece_vocabulary()).__name__ == "WordPieceVocabulary"
  with pytest.raises(ValueError, match="class_labels tokenizes with the backbone's vocabulary, but none was given"):
    initializers.class_labels(["entailment"])
