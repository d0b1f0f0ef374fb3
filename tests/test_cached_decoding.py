"""Cached decoding (the key/value cache of `T5.decode(decode=True)`) gives the tokens of uncached
decoding, greedy and beam search, for every prompt kind on the tiny T5 (tests/goldens/t5_tiny)."""

import functools

import flax.linen as nn
import jax
import numpy as np
import pytest

from conftest import GOLDENS
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.decoding import beam_search, greedy_decode
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder

# Padded inputs of three lengths (EOS = 1 last), so the encoder mask matters.
ENC = np.where(np.arange(9) < np.array([[9], [5], [3]]), np.random.default_rng(0).integers(2, 500, (3, 9)),
               0).astype(np.int32)
ENC[np.arange(3), [8, 4, 2]] = 1
LENGTH = 8  # decoded ids
KINDS = ("none", "input", "ptuning", "deep_all", "deep_decoder")


@pytest.fixture(scope="module")
def tiny():
  return load_t5(GOLDENS / "t5_tiny")


def _prompt(kind, config):
  le, ld = config.num_encoder_layers, config.num_decoder_layers
  return {"none": None, "input": InputPrompt(length=3),
          "ptuning": PTuningEncoder(length=4, encoder="mlp", template=(4, 0)),
          "deep_all": DeepPrompt(length=2),
          "deep_decoder": DeepPrompt(length=2, layers=tuple(range(le, le + ld)))}[kind]


def _model_and_params(tiny, kind):
  """The PromptedT5 and its parameters with random normal prompt values (so the prompt matters), the
  prompt's shapes from an abstract init."""
  config, backbone = tiny
  model = PromptedT5(config, _prompt(kind, config))
  params = {"backbone": backbone}
  if model.prompt is not None:
    ids = np.ones((1, 3), np.int32)
    init = functools.partial(model.init, enable_dropout=False)
    leaves, tree = jax.tree.flatten(nn.meta.unbox(jax.eval_shape(init, jax.random.key(0), ids, ids, ids))["params"]
                                    ["prompt"])
    # numpy: jax.random.normal of the 5-d prefix table alone compiles for seconds on the CPU.
    rng = np.random.default_rng(1)
    params["prompt"] = jax.tree.unflatten(tree, [(0.5 * rng.standard_normal(x.shape)).astype(x.dtype)
                                                 for x in leaves])
  return model, params


@functools.partial(jax.jit, static_argnums=0)
def _all_decodings(model, params, inputs):
  """{(greedy or beam, cached): ids [B, LENGTH]}, in one compiled program."""
  out = {}
  for cached in (True, False):
    out["greedy", cached] = greedy_decode(model, params, inputs, LENGTH, cached=cached)
    out["beam", cached] = beam_search(model, params, inputs, LENGTH, beam_size=3, alpha=0.6, cached=cached)
  return out


@pytest.fixture(scope="module")
def unprompted(tiny):
  """Greedy ids of the T5 without a prompt (the program the 'none' case reuses)."""
  return np.asarray(_all_decodings(*_model_and_params(tiny, "none"), ENC)["greedy", True])


@pytest.mark.parametrize("kind", KINDS)
def test_cached_decoding_gives_the_tokens_of_uncached_decoding(tiny, unprompted, kind):
  model, params = _model_and_params(tiny, kind)
  ids = {k: np.asarray(v) for k, v in _all_decodings(model, params, ENC).items()}
  np.testing.assert_array_equal(ids["greedy", True], ids["greedy", False])
  np.testing.assert_array_equal(ids["beam", True], ids["beam", False])
  greedy = ids["greedy", True]
  assert greedy.shape == (3, LENGTH) and greedy.dtype == np.int32
  # Some ids are real tokens, and a random prompt changes what is decoded.
  assert (greedy > 1).any()
  if kind != "none":
    assert not np.array_equal(greedy, unprompted), kind


@pytest.mark.parametrize("kind", ["input", "deep_decoder"])
def test_t5x_style_cache_steps_give_the_teacher_forced_logits(tiny, kind):
  # The cache made as t5x makes it (decode=True on dummy [B, L] inputs, mutable=['cache']), then one
  # PromptedT5.decode step per position: each step's logits are the teacher-forced ones at that position.
  model, params = _model_and_params(tiny, kind)
  targets = np.where(np.arange(LENGTH) < 6, np.random.default_rng(2).integers(2, 500, (3, LENGTH)), 0)
  inputs = text_batching.shift_right(targets.astype(np.int32))
  forced = jax.jit(lambda p: model.apply({"params": p}, ENC, inputs, np.ones_like(inputs),
                                         enable_dropout=False))(params)
  dummy = np.ones((3, LENGTH), np.int32)
  _, state = jax.jit(lambda p: model.apply({"params": p}, np.ones_like(ENC), dummy, dummy, enable_dropout=False,
                                           decode=True, mutable=["cache"]))(params)
  encoded = jax.jit(lambda p: model.apply({"params": p}, ENC, enable_dropout=False, method=PromptedT5.encode))(params)

  @jax.jit
  def step(p, cache, token):
    return model.apply({"params": p, "cache": cache}, encoded, ENC, token, token, enable_dropout=False, decode=True,
                       max_decode_length=LENGTH, mutable=["cache"], method=PromptedT5.decode)

  cache = state["cache"]
  for i in range(LENGTH):
    logits, state = step(params, cache, inputs[:, i:i + 1])
    cache = state["cache"]
    np.testing.assert_allclose(np.asarray(logits)[:, 0], np.asarray(forced)[:, i], atol=1e-5, err_msg=str(i))
  assert int(cache["backbone"]["decoder"]["layers_0"]["self_attention"]["cache_index"]) == LENGTH


def test_packing_is_refused(tiny):
  config, backbone = tiny
  model = PromptedT5(config)
  ids = np.ones((1, 3), np.int32)
  with pytest.raises(NotImplementedError, match="encoder_segment_ids"):
    model.apply({"params": {"backbone": backbone}}, ids, ids, ids, encoder_segment_ids=ids, enable_dropout=False)
  with pytest.raises(NotImplementedError, match="decoder_positions"):
    model.apply({"params": {"backbone": backbone}}, ids, ids, ids, decoder_positions=ids, enable_dropout=False)
