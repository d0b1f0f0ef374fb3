"""A mixed-task batch through a prompt bank equals running each task's prompt on its own."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning_jax.models.bert import BertConfig
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.prompts.bank import PromptBank
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt

TINY = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=3, num_attention_heads=4, intermediate_size=32,
                  max_position_embeddings=32)


@pytest.mark.parametrize("template", [DeepPrompt(length=3, reparam_hidden=8, layers="top 2"),
                                      InputPrompt(length=4)])
def test_mixed_task_batch_equals_per_task_runs(template):
  k, b, t = 3, 7, 9
  ids = jax.random.randint(jax.random.key(1), (b, t), 1, TINY.vocab_size)
  mask = jnp.ones((b, t), jnp.int32).at[2, 6:].set(0)
  ids, types = ids * mask, jnp.zeros_like(ids)
  task_ids = jnp.array([0, 2, 1, 1, 0, 2, 2])
  mixed = EncoderClassifier(TINY, 2, prompt=PromptBank(template, k), num_heads=k)
  params = nn.meta.unbox(mixed.init(jax.random.key(0), ids, types, mask, task_ids=task_ids)["params"])
  assert set(params["prompt"]) == {f"members_{i}" for i in range(k)}
  logits = jax.jit(lambda p: mixed.apply({"params": p}, ids, types, mask, task_ids=task_ids))(params)

  single = EncoderClassifier(TINY, 2, prompt=template)
  for task in range(k):
    task_params = {"backbone": params["backbone"], "prompt": params["prompt"][f"members_{task}"],
                   "head": {"kernel": params["head"]["kernel"][task], "bias": params["head"]["bias"][task]}}
    rows = np.flatnonzero(np.asarray(task_ids) == task)
    alone = single.apply({"params": task_params}, ids[rows], types[rows], mask[rows])
    np.testing.assert_allclose(logits[rows], alone, atol=1e-5)
  # Members really differ, so the test would catch a wrong member.
  assert float(jnp.abs(logits[0] - mixed.apply({"params": params}, ids, types, mask,
                                               task_ids=jnp.ones_like(task_ids))[0]).max()) > 1e-4
