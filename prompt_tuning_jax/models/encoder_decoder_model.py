"""The encoder-decoder model under the contract (models/base.py): a PromptedT5 (T5 1.1 and its
prompt) trained text-to-text with t5x's loss, scored, decoded and rank-classified.

Batches carry seqio.EncDecFeatureConverter's features (unpacked; text_batching.py):
encoder_input_tokens [B, T], decoder_target_tokens [B, T'] (EOS-terminated, 0 = padding),
decoder_input_tokens [B, T'] (the targets shifted right behind the start id 0) and
decoder_loss_weights [B, T'] (1 on real target tokens).

Evaluation decodes greedily (or with beam search, both with the key/value cache), scores each
example's targets, and when the task lists its possible targets also ranks them (rank
classification: each candidate's summed token log-probability, the input encoded once).
"""

from typing import Any, Dict, List, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import seqio

from prompt_tuning_jax import trainable
from prompt_tuning_jax.tasks import metrics, text_to_text
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models import decoding
from prompt_tuning_jax.models.base import BaseModel, InputShapes
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization
from prompt_tuning_jax.tasks import loading

# t5x's SpecialLossNormalizingFactor that divides by the number of real target tokens.
NUM_REAL_TARGET_TOKENS = "NUM_REAL_TARGET_TOKENS"


def token_log_probs(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """log p(target) per position [B, T'] from logits [B, T', V] (float32)."""
  logits = logits.astype(jnp.float32)
  return jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]


def cross_entropy_with_z_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array, z_loss: float = 1e-4):
  """t5x's loss: sum over tokens of weights * (-log p(target) + z_loss * logsumexp(logits)^2).

  Returns (loss, the z-loss part of it), both summed over the batch (not averaged).
  """
  logits = logits.astype(jnp.float32)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  nll = log_z - jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  z = z_loss * jnp.square(log_z)
  return jnp.sum((nll + z) * weights), jnp.sum(z * weights)


def sequence_scores(logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Sum of the target tokens' log-probabilities per example [B]: the rank-classification score."""
  return jnp.sum(token_log_probs(logits, targets) * weights, axis=-1)


def normalize_loss(loss, weights, loss_normalizing_factor: Union[None, float, str]):
  """The summed loss divided by t5x's loss_normalizing_factor (a number, NUM_REAL_TARGET_TOKENS or None)."""
  if loss_normalizing_factor is None:
    return loss
  if loss_normalizing_factor == NUM_REAL_TARGET_TOKENS:
    return loss / jnp.maximum(jnp.sum(weights), 1.0)
  return loss / loss_normalizing_factor


class TextBatcher:
  """Text-to-text batches of a task (data/text_batching.py): inputs and targets each padded to a length bucket."""

  def __init__(self, feature_lengths, data_dir=None, vocabulary=None):
    self.feature_lengths = {k: int(v) for k, v in dict(feature_lengths).items()}
    self.data_dir, self.vocabulary = data_dir, vocabulary  # None: the shipped data, the default vocabulary.

  def load(self, task_name: str, split: str, task_id: int = 0) -> text_batching.TextExamples:
    del task_id  # One task per T5 run.
    return loading.load_text_examples(task_name, split, self.feature_lengths, data_dir=self.data_dir,
                                           vocabulary=self.vocabulary)

  def train_batches(self, examples, batch_size: int, seed: int) -> text_batching.TrainBatches:
    return text_batching.TrainBatches(examples, batch_size, self.feature_lengths, seed)

  def eval_batches(self, examples, batch_size: int):
    return text_batching.eval_batches(examples, batch_size, self.feature_lengths)

  def input_shapes(self, examples=None) -> Dict[str, tuple]:
    del examples
    return {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}


class EncoderDecoderModel(BaseModel):
  """A PromptedT5 under the model contract.

  Attributes beyond the module: the vocabulary (decoding to strings), the decoded length, beam_size
  (1 = greedy), t5x's z_loss and loss_normalizing_factor, and the task's possible targets (None for an
  open-ended task) for rank classification.
  """

  FEATURE_CONVERTER_CLS = seqio.EncDecFeatureConverter

  def __init__(self, module: PromptedT5, vocabulary: Optional[seqio.Vocabulary] = None,
               max_decode_length: int = 8, beam_size: int = 1, z_loss: float = 1e-4,
               loss_normalizing_factor: Union[None, float, str] = None,
               target_strings: Optional[Sequence[str]] = None, batcher: Optional[TextBatcher] = None,
               metadata: Optional[Dict[str, Any]] = None):
    super().__init__(module, batcher)
    self.vocabulary, self.max_decode_length, self.beam_size = vocabulary, max_decode_length, beam_size
    self.z_loss, self.loss_normalizing_factor = z_loss, loss_normalizing_factor
    self.target_strings = tuple(target_strings) if target_strings else None
    self._metadata = dict(metadata or {})
    self._candidates = (text_batching.candidate_arrays(vocabulary, self.target_strings, max_decode_length)
                        if self.target_strings else None)

  def init_arguments(self, input_shapes: InputShapes):
    encoder = jnp.ones(tuple(input_shapes["encoder_input_tokens"]), jnp.int32)
    decoder = jnp.ones(tuple(input_shapes["decoder_input_tokens"]), jnp.int32)
    return (encoder, decoder, decoder), {"enable_dropout": False}

  def _logits(self, params, batch, dropout_rng=None) -> jax.Array:
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                             batch["decoder_target_tokens"], enable_dropout=dropout_rng is not None, rngs=rngs)

  def loss_fn(self, params, batch, dropout_rng):
    """t5x's loss (divided by loss_normalizing_factor); metrics z_loss, correct / count (examples whose every
    target token is the argmax: sequence accuracy under teacher forcing) and tokens (inputs and targets)."""
    targets, weights = batch["decoder_target_tokens"], batch["decoder_loss_weights"]
    logits = self._logits(params, batch, dropout_rng)
    loss, z = cross_entropy_with_z_loss(logits, targets, weights, self.z_loss)
    right = jnp.all((jnp.argmax(logits, -1) == targets) | (weights == 0), axis=-1)
    real = jnp.any(weights > 0, axis=-1)
    tokens = jnp.sum(batch["encoder_input_tokens"] > 0) + jnp.sum(weights)
    return normalize_loss(loss, weights, self.loss_normalizing_factor), {
        "z_loss": z, "correct": jnp.sum(right & real), "count": jnp.sum(real), "tokens": tokens}

  def score_batch(self, params, batch) -> jax.Array:
    """[B] the summed log-probability of each example's targets (no z-loss), no dropout."""
    return sequence_scores(self._logits(params, batch), batch["decoder_target_tokens"],
                           batch["decoder_loss_weights"])

  def predict_batch_with_aux(self, params, batch, rng=None):
    """(decoded ids [B, max_decode_length], EOS-terminated then padding; {}) by greedy or beam search."""
    del rng
    tokens = batch["encoder_input_tokens"]
    if self.beam_size == 1:
      return decoding.greedy_decode(self.module, params, tokens, self.max_decode_length), {}
    return decoding.beam_search(self.module, params, tokens, self.max_decode_length, beam_size=self.beam_size), {}

  def rank_scores(self, params, encoder_input_tokens, candidate_inputs, candidate_targets) -> jax.Array:
    """[B, C] each candidate target's summed token log-probability given each input [B, T]; the input is
    encoded once and shared by its C candidates (candidate arrays [C, T'])."""
    variables = {"params": params}
    b, c = encoder_input_tokens.shape[0], candidate_targets.shape[0]
    encoded = self.module.apply(variables, encoder_input_tokens, enable_dropout=False, method=PromptedT5.encode)
    targets = jnp.tile(candidate_targets, (b, 1))
    logits = self.module.apply(variables, jnp.repeat(encoded, c, axis=0), jnp.repeat(encoder_input_tokens, c, axis=0),
                               jnp.tile(candidate_inputs, (b, 1)), targets, enable_dropout=False,
                               method=PromptedT5.decode)
    return sequence_scores(logits, targets, (targets > 0).astype(jnp.float32)).reshape(b, c)

  def eval_batch(self, params, batch) -> Dict[str, jax.Array]:
    """{'predictions' [B, G], 'loss' [B] (summed token loss without z-loss, when the batch has targets),
    'rank_scores' [B, C] (when the task lists its targets)}."""
    out = {"predictions": self.predict_batch_with_aux(params, batch)[0]}
    if "decoder_target_tokens" in batch:
      out["loss"] = -self.score_batch(params, batch)
    if self._candidates is not None:
      out["rank_scores"] = self.rank_scores(params, batch["encoder_input_tokens"],
                                            self._candidates["candidate_inputs"], self._candidates["candidate_targets"])
    return out

  def decoded(self, outputs: Dict[str, List[np.ndarray]]) -> List[str]:
    return [self.vocabulary.decode(np.asarray(ids).tolist()) for ids in outputs["predictions"]]

  def prediction_rows(self, examples, outputs: Dict[str, List[np.ndarray]], with_targets: bool = True) -> List[dict]:
    """One dict per example (predictions.jsonl): idx, inputs, target, prediction, rank_prediction, rank_scores."""
    decoded, ranked = self.decoded(outputs), self._ranked(outputs)
    rows = []
    for i, prediction in enumerate(decoded):
      row = {"idx": int(examples.idx[i]), "inputs": examples.inputs_text[i], "prediction": prediction}
      if with_targets:
        row["target"] = examples.targets_text[i]
      if ranked is not None:
        row |= {"rank_prediction": ranked[i], "rank_scores": [round(float(x), 4) for x in outputs["rank_scores"][i]]}
      rows.append(row)
    return rows

  def prediction_lines(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> List[dict]:
    """The lines `python -m prompt_tuning_jax.eval` writes (prediction_rows)."""
    del task_name
    return self.prediction_rows(examples, outputs)

  def _ranked(self, outputs) -> Optional[List[str]]:
    if "rank_scores" not in outputs:
      return None
    return [self.target_strings[int(np.argmax(s))] for s in outputs["rank_scores"]]

  def score_examples(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    """'loss' (mean summed token loss per example), the task's metrics on the decoded strings (e.g. 'accuracy')
    and on the rank-classification choices ('rank_accuracy'), both by text_to_text.score_strings."""
    decoded, ranked = self.decoded(outputs), self._ranked(outputs)
    scores = {"loss": float(np.mean(outputs["loss"]))} | text_to_text.score_strings(task_name, examples, decoded)
    if ranked is not None:
      scores |= {f"rank_{k}": v for k, v in text_to_text.score_strings(task_name, examples, ranked).items()}
    return scores

  def majority_class_accuracy(self, eval_sets) -> Optional[float]:
    """How often the most frequent target string is right."""
    targets = [t for examples in eval_sets.values() for t in examples.targets_text]
    _, target_ids = np.unique(targets, return_inverse=True)
    return metrics.majority_class_accuracy(target_ids)

  def exportable(self, trained) -> Dict[str, np.ndarray]:
    """Trainable parameters as exported: a deep prompt's reparameterization collapsed to its table."""
    trained, prompt, c = dict(trained), self.module.prompt, self.module.config
    if isinstance(prompt, DeepPrompt) and prompt.reparam_hidden is not None and "prompt" in trained:
      trained["prompt"] = {"prefix": collapse_reparameterization(
          prompt, trained["prompt"], c.num_encoder_layers + c.num_decoder_layers, c.num_heads, c.d_kv)}
    return {k: np.asarray(v) for k, v in trainable.flatten(trained).items()}

  def export_metadata(self) -> Dict[str, Any]:
    c, prompt = self.module.config, self.module.prompt
    return {"model": "t5_1_1", "hidden_size": c.d_model, "num_hidden_layers": c.num_encoder_layers,
            "num_decoder_layers": c.num_decoder_layers, "num_attention_heads": c.num_heads,
            "vocab_size": c.vocab_size, "prompt_kind": type(prompt).__name__ if prompt is not None else "none",
            "prompt_length": prompt.length if prompt is not None else 0, "position_policy": "relative",
            "pooling": "none", **self._metadata}
