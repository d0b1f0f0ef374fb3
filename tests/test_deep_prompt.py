"""Deep prompts: masks, positions, reparameterization, and the plain-backbone limit."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning_jax.models.bert import BertConfig, BertEncoder
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization, layer_prefixes

TINY = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32,
                  max_position_embeddings=24)


def _batch(b=2, t=6):
  ids = jax.random.randint(jax.random.key(1), (b, t), 1, TINY.vocab_size)
  mask = jnp.ones((b, t), jnp.int32).at[1, 4:].set(0)
  return ids * mask, jnp.zeros_like(ids), mask


def _init(model, *batch):
  return nn.meta.unbox(model.init(jax.random.key(0), *batch)["params"])


def test_prefix_shapes_and_dropout():
  prompt = DeepPrompt(length=3, dropout_rate=0.5)
  params = _init(prompt, 2, TINY.num_hidden_layers, 4, 4)
  assert params["prefix"].shape == (2, 2, 3, 4, 4)  # [L, 2, P, N, D]
  out = prompt.apply({"params": params}, 5, 2, 4, 4)
  assert out.shape == (2, 2, 5, 3, 4, 4)  # [L, 2, B, P, N, D]
  dropped = prompt.apply({"params": params}, 5, 2, 4, 4, deterministic=False, rngs={"dropout": jax.random.key(3)})
  zero_share = float(jnp.mean(dropped == 0))
  assert 0.3 < zero_share < 0.7


def test_reparameterization_collapses_to_the_same_prefixes():
  prompt = DeepPrompt(length=4, reparam_hidden=8)
  params = _init(prompt, 1, 2, 4, 4)
  assert set(params) == {"embedding", "reparam_in", "reparam_out"}
  table = collapse_reparameterization(prompt, params, 2, 4, 4)
  assert table.shape == (2, 2, 4, 4, 4)
  direct = DeepPrompt(length=4)
  np.testing.assert_allclose(direct.apply({"params": {"prefix": table}}, 3, 2, 4, 4),
                             prompt.apply({"params": params}, 3, 2, 4, 4), atol=1e-6)


def test_prefix_is_visible_and_padding_stays_masked():
  ids, types, mask = _batch()
  encoder = BertEncoder(TINY)
  params = _init(encoder, ids, types, mask)
  prefixes = layer_prefixes(DeepPrompt(length=3).init_with_output(jax.random.key(2), 2, 2, 4, 4)[0], (0, 1), 2)
  hidden_plain, _ = encoder.apply({"params": params}, ids, types, mask)
  hidden_prompt, _ = encoder.apply({"params": params}, ids, types, mask, layer_prefixes=prefixes)
  assert np.abs(np.asarray(hidden_prompt - hidden_plain)).max() > 1e-3  # The prefix is attended to.
  # Changing a padded token changes nothing for the real tokens, with or without prefixes.
  ids2 = ids.at[1, 5].set(7)
  hidden_prompt2, _ = encoder.apply({"params": params}, ids2, types, mask, layer_prefixes=prefixes)
  np.testing.assert_allclose(hidden_prompt2[1, :4], hidden_prompt[1, :4], atol=1e-6)


def test_no_prompt_equals_plain_backbone():
  ids, types, mask = _batch()
  model = EncoderClassifier(TINY, num_labels=3, prompt=None)
  params = _init(model, ids, types, mask)
  hidden, _ = BertEncoder(TINY).apply({"params": params["backbone"]}, ids, types, mask)
  head = params["head"]
  np.testing.assert_allclose(model.apply({"params": params}, ids, types, mask),
                             hidden[:, 0] @ head["kernel"] + head["bias"], atol=1e-5)


def test_position_policies():
  ids, types, mask = _batch(t=6)
  after = EncoderClassifier(TINY, 2, prompt=DeepPrompt(length=4, position_policy="after_prompt"))
  zero = EncoderClassifier(TINY, 2, prompt=DeepPrompt(length=4, position_policy="from_zero"))
  params = _init(zero, ids, types, mask)
  assert after.max_position(6) == 10 and zero.max_position(6) == 6
  assert np.abs(np.asarray(after.apply({"params": params}, ids, types, mask) -
                           zero.apply({"params": params}, ids, types, mask))).max() > 1e-4
  # 6 + 4 fits the 24-row table; 21 + 4 does not.
  long_ids = jnp.ones((1, 21), jnp.int32)
  zero.apply({"params": params}, long_ids, long_ids * 0, long_ids)
  with pytest.raises(ValueError, match=r"needs 25 position ids but the backbone's position table has 24 rows"):
    after.apply({"params": params}, long_ids, long_ids * 0, long_ids)
