"""Input prompts (Lester): combine function, initializers on the real embeddings, limits."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_params
from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts import initializers
from prompt_tuning_jax.prompts.deep import DeepPrompt, resolve_layers
from prompt_tuning_jax.prompts.input import InputPrompt, prepend, prompted_position_ids
from prompt_tuning_jax.data.tokenizers import WordPieceVocabulary
from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir
from prompt_tuning_jax.data.vocabularies import wordpiece_vocabulary

TINY = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=32,
                  max_position_embeddings=24)


def _batch():
  ids = jnp.array([[2, 5, 7, 9, 3, 0], [2, 8, 3, 0, 0, 0]], jnp.int32)
  return ids, jnp.zeros_like(ids).at[0, 3:5].set(1), (ids != 0).astype(jnp.int32)


def test_prepend_extends_types_and_mask():
  words = jnp.ones((2, 3, 4))
  embeds, types, mask = prepend(jnp.full((2, 4), 7.0), words, jnp.ones((2, 3), jnp.int32),
                                jnp.array([[1, 1, 0], [1, 0, 0]]))
  assert embeds.shape == (2, 5, 4) and float(embeds[1, 1, 0]) == 7.0 and float(embeds[1, 2, 0]) == 1.0
  np.testing.assert_array_equal(types, [[0, 0, 1, 1, 1], [0, 0, 1, 1, 1]])
  np.testing.assert_array_equal(mask, [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
  np.testing.assert_array_equal(prompted_position_ids(1, 2, 3, "after_prompt"), [[0, 1, 2, 3, 4]])
  np.testing.assert_array_equal(prompted_position_ids(1, 2, 3, "from_zero"), [[0, 1, 0, 1, 2]])


@pytest.mark.parametrize("empty_prompt", [InputPrompt(length=0), DeepPrompt(length=3, layers=[])])
def test_empty_prompts_reproduce_the_plain_backbone(empty_prompt):
  batch = _batch()
  plain = EncoderClassifier(TINY, 2, prompt=None)
  params = nn.meta.unbox(plain.init(jax.random.key(0), *batch)["params"])
  prompted = EncoderClassifier(TINY, 2, prompt=empty_prompt)
  prompt_params = nn.meta.unbox(prompted.init(jax.random.key(1), *batch)["params"])["prompt"]
  np.testing.assert_allclose(prompted.apply({"params": {**params, "prompt": prompt_params}}, *batch),
                             plain.apply({"params": params}, *batch), atol=1e-6)


def test_input_prompt_changes_outputs_and_reads_the_real_cls():
  batch = _batch()
  model = EncoderClassifier(TINY, 2, prompt=InputPrompt(length=4))
  params = nn.meta.unbox(model.init(jax.random.key(0), *batch)["params"])
  assert params["prompt"]["prompt"].shape == (4, 16)
  assert float(jnp.abs(params["prompt"]["prompt"]).max()) <= 0.5  # uniform(0.5)
  baseline = EncoderClassifier(TINY, 2).apply({"params": {k: v for k, v in params.items() if k != "prompt"}}, *batch)
  assert float(jnp.abs(model.apply({"params": params}, *batch) - baseline).max()) > 1e-4
  with pytest.raises(ValueError, match="needs 25 position ids"):
    long_ids = jnp.ones((1, 21), jnp.int32)
    model.apply({"params": params}, long_ids, long_ids * 0, long_ids)


def test_deep_prompt_layer_selection():
  assert resolve_layers(None, 6) == (0, 1, 2, 3, 4, 5)
  assert resolve_layers("top 2", 6) == (4, 5) and resolve_layers("bottom 2", 6) == (0, 1)
  assert resolve_layers([4, 1], 6) == (1, 4)
  with pytest.raises(ValueError, match="'top k' or 'bottom k'"):
    resolve_layers("middle 2", 6)
  params = DeepPrompt(length=2, layers="top 1").init(jax.random.key(0), 1, 3, 4, 4)["params"]
  assert nn.meta.unbox(params)["prefix"].shape == (1, 2, 2, 4, 4)


def test_vocabulary_initializers_use_the_loaded_embeddings(minilm):
  config, backbone = minilm
  table = np.asarray(backbone["embeddings"]["word_embeddings"]["embedding"])
  labels = ["entailment", "not entailment"]
  vocab = WordPieceVocabulary(default_backbone_dir() / "vocab.txt")
  initializer = initializers.class_labels(labels, vocabulary=wordpiece_vocabulary(default_backbone_dir() / "vocab.txt"))
  model = EncoderClassifier(config, 2, prompt=InputPrompt(length=5, initializer=initializer))
  prompt = np.asarray(init_params(model, backbone, seed=0)["prompt"]["prompt"])
  for i, label in enumerate(labels):
    np.testing.assert_allclose(prompt[i], table[vocab.encode(label)].mean(0), atol=1e-6)
  first_5000 = {row.tobytes() for row in table[:5000]}
  assert all(row.tobytes() in first_5000 for row in prompt[2:])  # The rest: sampled vocabulary.

  sampled = initializers.sampled_vocab()(jax.random.key(0), (20, 384), table)
  rows = [int(np.argmin(np.abs(table[:5000] - np.asarray(r)).sum(1))) for r in sampled]
  assert len(set(rows)) == 20  # Without replacement.


def test_prompt_file_shape_mismatch_names_both_shapes(tmp_path):
  path = tmp_path / "prompt.npy"
  np.save(path, np.zeros((10, 768), np.float32))
  with pytest.raises(ValueError, match=r"holds shape \(10, 768\) but this backbone and PROMPT_LENGTH need \(20, 384\)"):
    initializers.from_file(str(path))(jax.random.key(0), (20, 384), None)
  np.save(path, np.ones((20, 384), np.float32))
  assert float(initializers.from_file(str(path))(jax.random.key(0), (20, 384), None).sum()) == 20 * 384
