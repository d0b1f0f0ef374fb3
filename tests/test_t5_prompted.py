"""Prompts on T5: prompt-aware masks, deep prompts on both stacks, the t5x loss, frozen weights,
and rank classification agreeing with greedy decoding (and beam search) on a forced label."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from conftest import GOLDENS, REPO
from prompt_tuning_jax import trainable
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.decoding import beam_search, greedy_decode
from prompt_tuning_jax.models.t5 import T5
from prompt_tuning_jax.models.t5_checkpoint import load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder
from prompt_tuning_jax.models import encoder_decoder_model as seq2seq
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.training.steps import TrainState, adafactor, make_train_step
from prompt_tuning_jax.data.vocabularies import sentencepiece_vocabulary

ENC = np.array([[5, 6, 7, 8, 1, 0, 0], [9, 10, 1, 0, 0, 0, 0]], np.int32)  # padded inputs, EOS = 1
TARGETS = np.array([[11, 12, 1, 0], [13, 1, 0, 0]], np.int32)


@pytest.fixture(scope="module")
def tiny():
  return load_t5(GOLDENS / "t5_tiny")


@pytest.fixture
def sentencepiece():
  return sentencepiece_vocabulary(REPO / "tests" / "fixtures" / "t5_tiny_spm.model", 100)


def _params(config, backbone, prompt, seed=0):
  shapes = {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}
  return EncoderDecoderModel(PromptedT5(config, prompt)).init_params(jax.random.key(seed), backbone, shapes)


def _apply(model, params, *args, method=None, **kwargs):
  """model.apply jitted, without dropout."""
  return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=method, enable_dropout=False, **kwargs))(
      params, *args)


def _encoder_mask(model, tokens):
  return model.apply({}, tokens, method=PromptedT5.encoder_mask)


def test_input_prompt_masks_shapes_and_visibility(tiny):
  config, backbone = tiny
  model = PromptedT5(config, InputPrompt(length=3))
  params = _params(config, backbone, model.prompt)
  encoded, mask = _apply(model, params, ENC, method=PromptedT5.encode), _encoder_mask(model, ENC)
  assert encoded.shape == (2, 3 + 7, config.d_model) and mask.shape == (2, 10) and mask.dtype == jnp.bool_
  np.testing.assert_array_equal(mask, np.concatenate([np.ones((2, 3), bool), ENC > 0], axis=1))
  dec = text_batching.shift_right(TARGETS)
  logits = _apply(model, params, ENC, dec, TARGETS)
  # Encoder-decoder mask: hiding the prompt positions from the cross-attention changes the logits ...
  decode = lambda e, m: _apply(T5(config), params["backbone"], e, None, dec, TARGETS, encoder_mask=m,
                               method=T5.decode)
  np.testing.assert_allclose(_apply(model, params, encoded, ENC, dec, TARGETS, method=PromptedT5.decode), logits,
                             atol=1e-5)
  np.testing.assert_allclose(decode(encoded, mask), logits, atol=1e-5)
  assert np.abs(decode(encoded, mask.at[:, :3].set(False)) - logits).max() > 1e-3
  # ... while padded encoder positions stay invisible: changing their states changes no real target position.
  noisy = jnp.where(mask[..., None], encoded, 1e3)
  real = TARGETS > 0
  np.testing.assert_allclose(np.asarray(decode(noisy, mask))[real], np.asarray(logits)[real], atol=1e-5)


def test_input_prompt_acts_as_prepended_tokens(tiny):
  # A prompt whose rows are token embeddings is those tokens in front of the text, masks included.
  config, backbone = tiny
  model = PromptedT5(config, InputPrompt(length=3))
  params = _params(config, backbone, model.prompt)
  words = np.array([20, 21, 22])
  params = {**params, "prompt": {"prompt": backbone["token_embedder"]["embedding"][words]}}
  dec = text_batching.shift_right(TARGETS)
  prompted = _apply(model, params, ENC, dec, TARGETS)
  plain_inputs = np.concatenate([np.tile(words, (2, 1)), ENC], axis=1)
  plain = _apply(PromptedT5(config), {"backbone": backbone}, plain_inputs, dec, TARGETS)
  np.testing.assert_allclose(prompted, plain, atol=1e-5)


def test_deep_prompt_covers_encoder_then_decoder_layers(tiny):
  config, backbone = tiny
  le, ld = config.num_encoder_layers, config.num_decoder_layers
  dec = text_batching.shift_right(TARGETS)
  plain = PromptedT5(config)
  plain_encoded = _apply(plain, {"backbone": backbone}, ENC, method=PromptedT5.encode)
  plain_logits = _apply(plain, {"backbone": backbone}, ENC, dec, TARGETS)
  model = PromptedT5(config, DeepPrompt(length=2, layers=[le]))  # only the first decoder layer
  params = _params(config, backbone, model.prompt)
  assert params["prompt"]["prefix"].shape == (1, 2, 2, config.num_heads, config.d_kv)
  encoded, mask = _apply(model, params, ENC, method=PromptedT5.encode), _encoder_mask(model, ENC)
  np.testing.assert_array_equal(encoded, plain_encoded)
  assert mask.shape == ENC.shape  # deep prompts add no input positions
  assert np.abs(_apply(model, params, ENC, dec, TARGETS) - plain_logits).max() > 1e-3
  full = PromptedT5(config, DeepPrompt(length=2))
  assert _params(config, backbone, full.prompt)["prompt"]["prefix"].shape[0] == le + ld


def test_ptuning_prepends_virtual_tokens(tiny):
  config, backbone = tiny
  model = PromptedT5(config, PTuningEncoder(length=4, encoder="mlp", template=(4, 0)))
  params = _params(config, backbone, model.prompt)
  mask = _encoder_mask(model, ENC)
  assert mask.shape == (2, 11) and bool(mask[:, :4].all())
  assert _apply(model, params, ENC, method=PromptedT5.encode).shape[:2] == mask.shape
  with pytest.raises(ValueError, match=r"set the template to \(4, 0\)"):
    _params(config, backbone, PTuningEncoder(length=4, template=(2, 2)))


def test_t5x_loss_and_normalizing_factor():
  logits = jax.random.normal(jax.random.key(0), (2, 4, 9)) * 3
  weights = (TARGETS > 0).astype(np.float32)
  targets = TARGETS % 9
  loss, z = seq2seq.cross_entropy_with_z_loss(logits, targets, weights, z_loss=1e-4)
  log_z = np.log(np.exp(np.asarray(logits, np.float64)).sum(-1))
  nll = log_z - np.take_along_axis(np.asarray(logits, np.float64), targets[..., None], -1)[..., 0]
  np.testing.assert_allclose(loss, ((nll + 1e-4 * log_z ** 2) * weights).sum(), rtol=1e-5)
  np.testing.assert_allclose(z, (1e-4 * log_z ** 2 * weights).sum(), rtol=1e-5)
  assert float(seq2seq.normalize_loss(loss, weights, seq2seq.NUM_REAL_TARGET_TOKENS)) == pytest.approx(float(loss) / 5)


def test_training_moves_only_the_prompt(tiny):
  config, backbone = tiny
  config = config.replace(dropout_rate=0.0)  # so that three steps on one batch surely lower its loss
  model = PromptedT5(config, InputPrompt(length=3))
  trained, frozen = trainable.split_params(_params(config, backbone, model.prompt), [r"prompt/.*"])
  before = {k: np.array(v) for k, v in trainable.flatten(frozen).items()}
  prompt_before = np.array(trained["prompt"]["prompt"])
  tx = adafactor()
  step = jax.jit(make_train_step(EncoderDecoderModel(model), tx), donate_argnums=0)
  state = TrainState(jnp.zeros((), jnp.int32), trained, tx.init(trained))
  batch = {"encoder_input_tokens": ENC, "decoder_input_tokens": text_batching.shift_right(TARGETS),
           "decoder_target_tokens": TARGETS, "decoder_loss_weights": (TARGETS > 0).astype(np.float32)}
  losses = []
  for _ in range(3):
    state, metrics = step(state, frozen, batch, jax.random.key(0))
    losses.append(float(metrics["loss"]))
  assert int(state.step) == 3 and losses[-1] < losses[0]
  assert int(metrics["count"]) == 2 and float(metrics["tokens"]) == 8 + 5
  assert np.abs(np.asarray(state.trainable["prompt"]["prompt"]) - prompt_before).max() > 1e-3
  for k, v in trainable.flatten(frozen).items():
    assert np.array_equal(np.asarray(v), before[k]), k  # bit-identical


def _force_labels(model, params, inputs, labels, vocabulary, margin=20.0):
  """Params whose output layer makes the decoder emit `labels[b]` for inputs[b] (then EOS).

  The decoder's final states X at the teacher-forced label positions are captured, and the
  output kernel is solved from X @ W = margin * one_hot(next token); X has fewer rows than
  d_model, so the fit is exact.
  """
  arrays = text_batching.candidate_arrays(vocabulary, labels, 8)
  targets = arrays["candidate_targets"]
  _, captured = model.apply({"params": params}, inputs, arrays["candidate_inputs"], targets, enable_dropout=False,
                            capture_intermediates=lambda m, _: m.name == "decoder_norm", mutable=["intermediates"])
  states = np.asarray(captured["intermediates"]["backbone"]["decoder"]["decoder_norm"]["__call__"][0], np.float64)
  rows = targets > 0
  goal = margin * np.eye(model.config.vocab_size)[targets[rows]]
  kernel = np.linalg.lstsq(states[rows], goal, rcond=None)[0].astype(np.float32)
  flat = trainable.flatten(params)
  flat["backbone/decoder/logits_dense/kernel"] = jnp.asarray(kernel)
  return trainable.unflatten(flat)


def test_rank_classification_and_decoding_agree_on_forced_labels(tiny, sentencepiece):
  config, backbone = tiny
  model = PromptedT5(config, InputPrompt(length=3))
  labels = ["entailment", "not_entailment"]
  forced = ["not_entailment", "entailment"]  # example b is forced to say forced[b]
  params = _force_labels(model, _params(config, backbone, model.prompt), ENC, forced, sentencepiece)
  trained, frozen = trainable.split_params(params, [r"prompt/.*"])
  candidates = text_batching.candidate_arrays(sentencepiece, labels, 8)
  contract = EncoderDecoderModel(model, max_decode_length=8)
  merged = lambda t, f: trainable.merge_params(t, f)
  scores = jax.jit(lambda t, f, *c: contract.rank_scores(merged(t, f), ENC, *c))(
      trained, frozen, candidates["candidate_inputs"], candidates["candidate_targets"])
  assert [labels[i] for i in np.argmax(scores, -1)] == forced
  assert float(jnp.max(scores, -1).min()) > -1e-3  # the forced label is (nearly) certain
  for beam_size in (1, 3):
    contract = EncoderDecoderModel(model, max_decode_length=8, beam_size=beam_size)
    ids = jax.jit(lambda t, f: contract.predict_batch_with_aux(merged(t, f), {"encoder_input_tokens": ENC})[0])(
        trained, frozen)
    assert [sentencepiece.decode(row.tolist()) for row in np.asarray(ids)] == forced, beam_size


def test_beam_of_one_is_greedy(tiny):
  config, backbone = tiny
  model, params = PromptedT5(config), {"backbone": backbone}
  greedy = jax.jit(greedy_decode, static_argnums=(0, 3))(model, params, ENC, 6)
  beam = jax.jit(lambda p, x: beam_search(model, p, x, 6, beam_size=1, alpha=0.0))(params, ENC)
  np.testing.assert_array_equal(beam, greedy)


def test_every_prompt_parameter_has_replicated_axes(tiny):
  config, _ = tiny
  ids = jnp.ones((1, 3), jnp.int32)
  for prompt in (InputPrompt(length=2), DeepPrompt(length=2), PTuningEncoder(length=2, template=(2, 0))):
    init = functools.partial(PromptedT5(config, prompt).init, enable_dropout=False)
    boxed = jax.eval_shape(init, jax.random.key(0), ids, ids, ids)["params"]["prompt"]
    leaves = traverse_util.flatten_dict(boxed, sep="/")
    assert all(isinstance(v, nn.LogicallyPartitioned) and all(n.startswith("prompt_") for n in v.names)
               for v in leaves.values()), leaves
