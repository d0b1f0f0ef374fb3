"""t5x models for our modules: t5x's trainer, evaluator and inference drive them; the backbone stays frozen.

- `PromptEncoderDecoderModel`: t5x's EncoderDecoderModel on a PromptedT5 (models/t5_prompted.py, whose
  methods have t5x's EncoderDecoder signatures). Loss (cross-entropy with z-loss), scoring, beam search and
  temperature sampling are t5x's own; initialisation is our model contract's (models/base.py), which also
  gives t5x the 'params_axes' collection its partitioner needs.
- `PromptEncoderModel`: a t5x BaseModel on an EncoderClassifier (P-Tuning v2, Prompt Tuning, P-Tuning,
  Prefix Tuning, BitFit on a BERT-family encoder) whose loss, scores and predictions are our
  EncoderModel's, with batches from `features.EncoderFeatureConverter`.

Both stop the gradient of every parameter outside `trainable_patterns` inside loss_fn, so XLA computes no
backbone gradients; `optim.prompt_only` keeps the optimizer from touching them (no update, no state).
"""

from typing import Mapping, Optional, Sequence

import clu.metrics as clu_metrics
import flax
import jax
import jax.numpy as jnp
from flax import traverse_util
from t5x import decoding
from t5x import metrics as metrics_lib
from t5x import models as t5x_models

from prompt_tuning_jax import trainable
from prompt_tuning_jax.models import encoder_decoder_model, encoder_model
from prompt_tuning_jax.t5x import features

PROMPT_PATTERNS = (r"prompt/.*",)


def stop_frozen_gradients(params, patterns: Sequence[str]):
  """`params` with jax.lax.stop_gradient on every leaf whose '/'-path matches none of `patterns`."""
  flat = traverse_util.flatten_dict(flax.core.unfreeze(params), sep="/")
  return traverse_util.unflatten_dict(
      {k: v if trainable.is_trainable(k, patterns) else jax.lax.stop_gradient(v) for k, v in flat.items()}, sep="/")


class PromptEncoderDecoderModel(t5x_models.EncoderDecoderModel):
  """t5x's EncoderDecoderModel for a PromptedT5; only `trainable_patterns` get gradients.

  Arguments as t5x's EncoderDecoderModel (z_loss defaults to T5 1.1's 1e-4), plus trainable_patterns.
  Packed batches are refused by the module (prompts and packing do not mix): set pack = False.
  """

  def __init__(self, module, input_vocabulary, output_vocabulary, optimizer_def,
               decode_fn=decoding.beam_search, feature_converter_cls=None, label_smoothing: float = 0.0,
               z_loss: float = 1e-4, loss_normalizing_factor=None, default_decoder_params=None,
               trainable_patterns: Sequence[str] = PROMPT_PATTERNS):
    super().__init__(module, input_vocabulary, output_vocabulary, optimizer_def, decode_fn=decode_fn,
                     feature_converter_cls=feature_converter_cls, label_smoothing=label_smoothing, z_loss=z_loss,
                     loss_normalizing_factor=loss_normalizing_factor, default_decoder_params=default_decoder_params)
    self.trainable_patterns = tuple(trainable_patterns)
    self.contract = encoder_decoder_model.EncoderDecoderModel(module, vocabulary=output_vocabulary, z_loss=z_loss,
                                                              loss_normalizing_factor=loss_normalizing_factor)

  def get_initial_variables(self, rng, input_shapes: Mapping[str, Sequence[int]], input_types=None):
    """{'params', 'params_axes'} of a fresh PromptedT5 (t5x restores the backbone over it afterwards)."""
    del input_types
    return flax.core.freeze(self.contract.get_initial_variables(rng, input_shapes))

  def loss_fn(self, params, batch, dropout_rng):
    return super().loss_fn(stop_frozen_gradients(params, self.trainable_patterns), batch, dropout_rng)


def encoder_metrics(loss, stats, batch) -> dict:
  """t5x's metric objects for an encoder batch: loss (per step), accuracy, examples and tokens per second."""
  examples = jnp.sum(batch["weights"] > 0)
  return {
      "loss": metrics_lib.AveragePerStep(total=loss),
      "accuracy": clu_metrics.Average(total=jnp.asarray(stats["correct"], jnp.float32),
                                      count=jnp.asarray(stats["count"], jnp.int32)),
      "timing/seqs": metrics_lib.Sum(examples),
      "timing/seqs_per_second": metrics_lib.TimeRate.from_model_output(numerator=examples),
      "timing/tokens_per_second": metrics_lib.TimeRate.from_model_output(numerator=stats["tokens"]),
      "timing/steps_per_second": metrics_lib.StepsPerTime.from_model_output(),
  }


class PromptEncoderModel(t5x_models.BaseModel):
  """A t5x BaseModel for an EncoderClassifier: our EncoderModel's loss, scores and predictions.

  Attributes: module (an EncoderClassifier), optimizer_def, ensemble_size (K members see every example),
  trainable_patterns (default: prompt and head, P-Tuning v2's), and input_vocabulary (the backbone's
  WordPiece vocabulary, for t5x's inference outputs).
  """

  FEATURE_CONVERTER_CLS = features.EncoderFeatureConverter

  def __init__(self, module, optimizer_def, ensemble_size: int = 1,
               trainable_patterns: Sequence[str] = trainable.DEEP_PROMPT_PATTERNS, input_vocabulary=None):
    super().__init__(optimizer_def=optimizer_def)
    self.module, self.input_vocabulary, self.output_vocabulary = module, input_vocabulary, input_vocabulary
    self.trainable_patterns = tuple(trainable_patterns)
    self.contract = encoder_model.EncoderModel(module, ensemble_size=ensemble_size)

  def get_initial_variables(self, rng, input_shapes: Mapping[str, Sequence[int]], input_types=None):
    del input_types
    return flax.core.freeze(self.contract.get_initial_variables(rng, {"input_ids": input_shapes["input_ids"]}))

  def loss_fn(self, params, batch, dropout_rng: Optional[jax.Array]):
    batch = features.per_example(batch)
    loss, stats = self.contract.loss_fn(stop_frozen_gradients(params, self.trainable_patterns), batch, dropout_rng)
    return loss, encoder_metrics(loss, stats, batch)

  def score_batch(self, params, batch, return_intermediates: bool = False):
    del return_intermediates
    return self.contract.score_batch(params, features.per_example(batch))

  def predict_batch_with_aux(self, params, batch, rng: Optional[jax.Array] = None):
    return self.contract.predict_batch_with_aux(params, features.per_example(batch), rng)
