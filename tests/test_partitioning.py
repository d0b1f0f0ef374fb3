"""Every parameter carries logical axis names that the rules know; prompts stay replicated."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.axes import LOGICAL_AXIS_RULES
from prompt_tuning_jax.prompts.deep import DeepPrompt

TINY = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=32)


def test_all_parameters_have_known_logical_axes():
  ids = jnp.ones((1, 4), jnp.int32)
  for prompt in (DeepPrompt(length=3), DeepPrompt(length=3, reparam_hidden=8)):
    boxed = EncoderClassifier(TINY, 2, prompt=prompt).init(jax.random.key(0), ids, ids, ids)["params"]
    rules = dict(LOGICAL_AXIS_RULES)
    leaves = jax.tree_util.tree_leaves_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
    assert len(leaves) > 20
    for path, leaf in leaves:
      assert isinstance(leaf, nn.LogicallyPartitioned), path
      assert len(leaf.names) == leaf.value.ndim, path
      assert all(name in rules for name in leaf.names), (path, leaf.names)
      if "prompt" in jax.tree_util.keystr(path):
        assert all(rules[name] is None for name in leaf.names), (path, leaf.names)


def test_roberta_position_offset_from_config():
  assert BertConfig.from_dict({"model_type": "roberta", "pad_token_id": 1}).position_id_offset == 2
  assert BertConfig.from_dict({"model_type": "bert"}).position_id_offset == 0
