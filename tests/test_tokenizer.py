"""WordPiece ids equal Hugging Face's on the golden examples; truncation is longest-first."""

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import GOLDENS
from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir
from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary, encode_for_encoder, truncate_longest_first


@pytest.fixture(scope="module")
def vocab():
  return WordPieceVocabulary(default_backbone_dir() / "vocab.txt")


def test_ids_identical_to_hugging_face(vocab):
  meta = json.loads((GOLDENS / "minilm_pairs.json").read_text())
  golden = np.load(GOLDENS / "minilm_pairs.npz")
  for i, ex in enumerate(meta["examples"]):
    text_b = None if ex["text_b"] is None else tf.constant(ex["text_b"])
    ids, types = encode_for_encoder(vocab, tf.constant(ex["text_a"]), text_b, meta["max_length"])
    n = int(golden["attention_mask"][i].sum())
    np.testing.assert_array_equal(ids.numpy(), golden["input_ids"][i, :n], err_msg=f"example {i}: {ex}")
    np.testing.assert_array_equal(types.numpy(), golden["token_type_ids"][i, :n], err_msg=f"example {i}")


def _one_at_a_time(len_a, len_b, budget):
  """Hugging Face's reference loop: drop from the longer; on a tie from the second."""
  while len_a + len_b > budget:
    if len_a > len_b:
      len_a -= 1
    else:
      len_b -= 1
  return len_a, len_b


def test_truncate_longest_first_matches_reference_loop():
  for budget in (1, 2, 7, 8, 61):
    for len_a in range(0, 70, 3):
      for len_b in range(0, 70, 4):
        got = truncate_longest_first(tf.constant(len_a), tf.constant(len_b), budget)
        assert tuple(int(x) for x in got) == _one_at_a_time(len_a, len_b, budget), (len_a, len_b, budget)


def test_single_text_layout_and_round_trip(vocab):
  ids, types = encode_for_encoder(vocab, tf.constant("Hello, World!"), None, 5)
  assert ids.numpy().tolist() == [vocab.cls_id, vocab.token_id("hello"), vocab.token_id(","),
                                  vocab.token_id("world"), vocab.sep_id]
  assert types.numpy().tolist() == [0] * 5
  assert vocab.decode(vocab.encode("The café is naïve")) == "the cafe is naive"
  assert vocab.pad_id == 0
