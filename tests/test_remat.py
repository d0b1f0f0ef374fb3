"""Rematerialised backbone layers: same parameters, same outputs and gradients, with deep prompts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning_jax.models.bert import BertConfig, BertEncoder

CONFIG = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)


@pytest.mark.parametrize("deterministic", [True, False])
def test_remat_matches_plain_layers_with_deep_prompts(deterministic):
  ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (2, 6)), jnp.int32)
  mask = jnp.ones_like(ids).at[1, 4:].set(0)
  plain, remat = BertEncoder(CONFIG), BertEncoder(CONFIG.replace(remat=True))
  params = plain.init(jax.random.key(0), ids, ids * 0, mask)
  assert jax.tree.structure(params) == jax.tree.structure(remat.init(jax.random.key(0), ids, ids * 0, mask))
  prefix = jax.random.normal(jax.random.key(2), (2, 2, 3, 4, 8))

  def loss(p, model, prefix):
    layer_prefixes = [(prefix[0], prefix[1])] * CONFIG.num_hidden_layers
    hidden, _ = model.apply(p, ids, ids * 0, mask, layer_prefixes=layer_prefixes, deterministic=deterministic,
                            rngs={"dropout": jax.random.key(1)})
    return (hidden ** 2).mean()

  for argnum in (0, 2):  # Backbone (fine-tuning) and prompt gradients.
    expected = jax.grad(loss, argnum)(params, plain, prefix)
    got = jax.grad(loss, argnum)(params, remat, prefix)
    for e, g in zip(jax.tree.leaves(expected), jax.tree.leaves(got)):
      np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(loss(params, remat, prefix), loss(params, plain, prefix), rtol=1e-6)
