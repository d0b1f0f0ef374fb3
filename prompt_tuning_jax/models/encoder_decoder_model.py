"""The encoder-decoder model under the contract (models/base.py): a PromptedT5 (T5 1.1 and its
prompt) trained text-to-text with t5x's loss, scored, decoded and rank-classified.

Batches carry seqio.EncDecFeatureConverter's features (unpacked; text_batching.py):
encoder_input_tokens [B, T], decoder_target_tokens [B, T'] (EOS-terminated, 0 = padding),
decoder_input_tokens [B, T'] (the targets shifted right behind the start id 0) and
decoder_loss_weights [B, T'] (1 on real target tokens), and prompt_ids [B] (the prompt-bank
member of each row: its task's id in a mixed-task batch).

An ensemble of K prompts (a PromptBank over one frozen T5) sees every example: the batch is
repeated K times with prompt_ids = the member index (encoder_model.for_ensemble), and
evaluation outputs come back as [B, K, ...]; the members' decoded strings are voted on
(tasks/ensembles.majority_vote_strings) and their rank-classification probabilities averaged.
A mixture's rank classification scores the union of its tasks' targets once and each task
chooses among its own.

Evaluation decodes greedily (or with beam search, both with the key/value cache), scores each
example's targets, and when the task lists its possible targets also ranks them (rank
classification: each candidate's summed token log-probability, the input encoded once).
"""

from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
import seqio

from prompt_tuning_jax import trainable
from prompt_tuning_jax.tasks import ensembles, metrics, text_to_text
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models import decoding
from prompt_tuning_jax.models.base import BaseModel, InputShapes
from prompt_tuning_jax.models.encoder_model import for_ensemble
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
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
    """The split's examples, each with prompt id `task_id` (its prompt in a bank of one prompt per task)."""
    examples = loading.load_text_examples(task_name, split, self.feature_lengths, data_dir=self.data_dir,
                                          vocabulary=self.vocabulary)
    examples.prompt_ids = np.full((len(examples),), task_id, np.int32)
    return examples

  def concatenate(self, parts) -> text_batching.TextExamples:
    return text_batching.concatenate(parts)

  def train_batches(self, examples, batch_size: int, seed: int) -> text_batching.TrainBatches:
    return text_batching.TrainBatches(examples, batch_size, self.feature_lengths, seed)

  def eval_batches(self, examples, batch_size: int):
    return text_batching.eval_batches(examples, batch_size, self.feature_lengths)

  def input_shapes(self, examples=None) -> Dict[str, tuple]:
    del examples
    return {"encoder_input_tokens": (1, 8), "decoder_input_tokens": (1, 8)}


def by_example(x: jax.Array, size: int) -> jax.Array:
  """Member-major rows [K*B, ...] (for_ensemble's order) -> [B, K, ...]."""
  return jnp.moveaxis(x.reshape((size, -1) + x.shape[1:]), 0, 1)


def _prefixed(prefix: str, scores: Mapping[str, float]) -> Dict[str, float]:
  return {f"{prefix}{k}": v for k, v in scores.items()}


class EncoderDecoderModel(BaseModel):
  """A PromptedT5 under the model contract.

  Attributes beyond the module: the vocabulary (decoding to strings), the decoded length, beam_size
  (1 = greedy), t5x's z_loss and loss_normalizing_factor, the task's possible targets (None for an
  open-ended task) for rank classification, or for a mixture `task_targets` (task -> its targets or
  None; the candidates are their union), and `ensemble_size` K (a PromptBank of K prompts, each
  member seeing every example).
  """

  FEATURE_CONVERTER_CLS = seqio.EncDecFeatureConverter

  def __init__(self, module: PromptedT5, vocabulary: Optional[seqio.Vocabulary] = None,
               max_decode_length: int = 8, beam_size: int = 1, z_loss: float = 1e-4,
               loss_normalizing_factor: Union[None, float, str] = None,
               target_strings: Optional[Sequence[str]] = None, batcher: Optional[TextBatcher] = None,
               metadata: Optional[Dict[str, Any]] = None, ensemble_size: int = 1,
               task_targets: Optional[Mapping[str, Optional[Sequence[str]]]] = None,
               member_names: Optional[Sequence[str]] = None):
    super().__init__(module, batcher)
    self.vocabulary, self.max_decode_length, self.beam_size = vocabulary, max_decode_length, beam_size
    self.z_loss, self.loss_normalizing_factor = z_loss, loss_normalizing_factor
    self.ensemble_size = ensemble_size
    self.task_targets = None if task_targets is None else {k: tuple(v or ()) for k, v in task_targets.items()}
    if self.task_targets is not None:  # A mixture: the union of its tasks' targets, first seen first.
      target_strings = list(dict.fromkeys(t for targets in self.task_targets.values() for t in targets))
    self.target_strings = tuple(target_strings) if target_strings else None
    self.member_names = tuple(member_names or ())  # Names of the bank's members' own exports.
    self._metadata = dict(metadata or {})
    self._candidates = (text_batching.candidate_arrays(vocabulary, self.target_strings, max_decode_length)
                        if self.target_strings else None)

  def init_arguments(self, input_shapes: InputShapes):
    encoder = jnp.ones(tuple(input_shapes["encoder_input_tokens"]), jnp.int32)
    decoder = jnp.ones(tuple(input_shapes["decoder_input_tokens"]), jnp.int32)
    return (encoder, decoder, decoder), {"enable_dropout": False}

  def _members(self, batch):
    """The batch repeated for each ensemble member (prompt_ids = member index); itself without an ensemble."""
    batch = dict(batch)
    if "prompt_ids" not in batch:  # Batches built elsewhere (serving, tests): every row member 0.
      batch["prompt_ids"] = jnp.zeros((batch["encoder_input_tokens"].shape[0],), jnp.int32)
    return for_ensemble(batch, self.ensemble_size, ids_key="prompt_ids")

  def _logits(self, params, batch, dropout_rng=None) -> jax.Array:
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, batch["encoder_input_tokens"], batch["decoder_input_tokens"],
                             batch["decoder_target_tokens"], enable_dropout=dropout_rng is not None, rngs=rngs,
                             prompt_ids=batch.get("prompt_ids"))

  def loss_fn(self, params, batch, dropout_rng):
    """t5x's loss (divided by loss_normalizing_factor; an ensemble's is the mean over its members); metrics
    z_loss, correct / count (examples whose every target token is the argmax: sequence accuracy under teacher
    forcing; an ensemble's counts every member) and tokens (inputs and targets)."""
    members = self._members(batch)
    targets, weights = members["decoder_target_tokens"], members["decoder_loss_weights"]
    logits = self._logits(params, members, dropout_rng)
    loss, z = cross_entropy_with_z_loss(logits, targets, weights, self.z_loss)
    right = jnp.all((jnp.argmax(logits, -1) == targets) | (weights == 0), axis=-1)
    real = jnp.any(weights > 0, axis=-1)
    tokens = jnp.sum(members["encoder_input_tokens"] > 0) + jnp.sum(weights)
    k = self.ensemble_size
    return normalize_loss(loss / k, batch["decoder_loss_weights"], self.loss_normalizing_factor), {
        "z_loss": z / k, "correct": jnp.sum(right & real), "count": jnp.sum(real), "tokens": tokens}

  def _member_scores(self, params, members) -> jax.Array:
    """[K*B] each row's summed target log-probability (no z-loss), no dropout."""
    return sequence_scores(self._logits(params, members), members["decoder_target_tokens"],
                           members["decoder_loss_weights"])

  def score_batch(self, params, batch) -> jax.Array:
    """[B] the summed log-probability of each example's targets (no z-loss; an ensemble's members averaged)."""
    return self._member_scores(params, self._members(batch)).reshape(self.ensemble_size, -1).mean(0)

  def _decode(self, params, members) -> jax.Array:
    """[K*B, max_decode_length] ids by greedy or beam search, each row with its prompt."""
    tokens, ids = members["encoder_input_tokens"], members["prompt_ids"]
    if self.beam_size == 1:
      return decoding.greedy_decode(self.module, params, tokens, self.max_decode_length, prompt_ids=ids)
    return decoding.beam_search(self.module, params, tokens, self.max_decode_length, beam_size=self.beam_size,
                                prompt_ids=ids)

  def predict_batch_with_aux(self, params, batch, rng=None):
    """(decoded ids [B, max_decode_length] ([B, K, max_decode_length]: each member's), EOS-terminated then
    padding; {}) by greedy or beam search."""
    del rng
    ids = self._decode(params, self._members(batch))
    return (ids if self.ensemble_size == 1 else by_example(ids, self.ensemble_size)), {}

  def rank_scores(self, params, encoder_input_tokens, candidate_inputs, candidate_targets,
                  prompt_ids=None) -> jax.Array:
    """[B, C] each candidate target's summed token log-probability given each input [B, T] with its prompt
    (prompt_ids [B]); the input is encoded once and shared by its C candidates (candidate arrays [C, T'])."""
    variables = {"params": params}
    b, c = encoder_input_tokens.shape[0], candidate_targets.shape[0]
    encoded = self.module.apply(variables, encoder_input_tokens, enable_dropout=False, prompt_ids=prompt_ids,
                                method=PromptedT5.encode)
    targets = jnp.tile(candidate_targets, (b, 1))
    logits = self.module.apply(variables, jnp.repeat(encoded, c, axis=0), jnp.repeat(encoder_input_tokens, c, axis=0),
                               jnp.tile(candidate_inputs, (b, 1)), targets, enable_dropout=False,
                               prompt_ids=None if prompt_ids is None else jnp.repeat(prompt_ids, c),
                               method=PromptedT5.decode)
    return sequence_scores(logits, targets, (targets > 0).astype(jnp.float32)).reshape(b, c)

  def eval_batch(self, params, batch) -> Dict[str, jax.Array]:
    """{'predictions' [B, G], 'loss' [B] (summed token loss without z-loss, when the batch has targets),
    'rank_scores' [B, C] (when the task lists its targets)}. An ensemble's are each member's, [B, K, ...]
    ('loss' the members' mean, [B]), plus 'prediction_scores' [B, K]: each member's log-probability of its
    own decoded ids (the vote's tie-break)."""
    members, k = self._members(batch), self.ensemble_size
    ids = self._decode(params, members)
    out = {"predictions": ids}
    if k > 1:
      decoded = {**members, "decoder_target_tokens": ids, "decoder_input_tokens": jnp.pad(ids[:, :-1], ((0, 0), (1, 0))),
                 "decoder_loss_weights": (ids > 0).astype(jnp.float32)}
      out["prediction_scores"] = self._member_scores(params, decoded)
    if "decoder_target_tokens" in batch:
      out["loss"] = -self._member_scores(params, members)
    if self._candidates is not None:
      out["rank_scores"] = self.rank_scores(params, members["encoder_input_tokens"],
                                            self._candidates["candidate_inputs"], self._candidates["candidate_targets"],
                                            members["prompt_ids"])
    if k == 1:
      return out
    out = {name: by_example(value, k) for name, value in out.items()}
    if "loss" in out:
      out["loss"] = out["loss"].mean(1)
    return out

  def _member_strings(self, outputs: Dict[str, List[np.ndarray]]) -> List[List[str]]:
    """[K][n] each member's decoded strings (K = 1 without an ensemble)."""
    ids = np.asarray(outputs["predictions"])
    ids = ids[:, None] if ids.ndim == 2 else ids  # [n, K, G]
    return [[self.vocabulary.decode(row.tolist()) for row in ids[:, m]] for m in range(ids.shape[1])]

  def decoded(self, outputs: Dict[str, List[np.ndarray]]) -> List[str]:
    """[n] the decoded strings: an ensemble's majority vote (ties: the voters' higher mean probability)."""
    members = self._member_strings(outputs)
    if len(members) == 1:
      return members[0]
    return ensembles.majority_vote_strings(members, np.asarray(outputs["prediction_scores"]).T)

  def _candidate_index(self, task_name: Optional[str]) -> Optional[np.ndarray]:
    """Indices into target_strings of `task_name`'s candidates (all for a single task; None: none)."""
    if self.target_strings is None:
      return None
    if self.task_targets is None or task_name is None:
      return np.arange(len(self.target_strings))
    own = self.task_targets.get(task_name) or ()
    return np.array([self.target_strings.index(t) for t in own]) if own else None

  def _rank_choices(self, outputs, task_name: Optional[str]) -> Optional[Dict[str, List[str]]]:
    """Rank-classification choices by metric prefix: 'rank_' (an ensemble's: the members' mean probability over
    the task's candidates), and for an ensemble 'rank_vote_' and 'rank_member_{k}_'; None without candidates."""
    index = self._candidate_index(task_name)
    if "rank_scores" not in outputs or index is None:
      return None
    scores = np.asarray(outputs["rank_scores"], np.float64)[..., index]  # [n, C] or [n, K, C]
    names = [self.target_strings[i] for i in index]
    pick = lambda choice: [names[int(c)] for c in choice]
    if scores.ndim == 2:
      return {"rank_": pick(scores.argmax(-1))}
    log_probs = ensembles.log_softmax(np.moveaxis(scores, 1, 0))  # [K, n, C]
    mean_probs, member_choice = np.exp(log_probs).mean(0), log_probs.argmax(-1)
    choices = {"rank_": pick(mean_probs.argmax(-1)), "rank_vote_": pick(ensembles.majority_vote(member_choice,
                                                                                                mean_probs))}
    return choices | {f"rank_member_{m}_": pick(c) for m, c in enumerate(member_choice)}

  def prediction_rows(self, examples, outputs: Dict[str, List[np.ndarray]], with_targets: bool = True,
                      task_name: Optional[str] = None) -> List[dict]:
    """One dict per example (predictions.jsonl): idx, inputs, target, prediction, rank_prediction, rank_scores
    (the task's candidates'; an ensemble's: the members' mean probabilities) and an ensemble's member_predictions."""
    decoded, ranked, members = self.decoded(outputs), self._rank_choices(outputs, task_name), None
    if self.ensemble_size > 1:
      members = self._member_strings(outputs)
    index = self._candidate_index(task_name)
    rows = []
    for i, prediction in enumerate(decoded):
      row = {"idx": int(examples.idx[i]), "inputs": examples.inputs_text[i], "prediction": prediction}
      if with_targets:
        row["target"] = examples.targets_text[i]
      if members is not None:
        row["member_predictions"] = [m[i] for m in members]
      if ranked is not None:
        scores = np.asarray(outputs["rank_scores"][i], np.float64)[..., index]
        if scores.ndim == 2:
          scores = np.exp(ensembles.log_softmax(scores)).mean(0)
        row |= {"rank_prediction": ranked["rank_"][i], "rank_scores": [round(float(x), 4) for x in scores]}
      rows.append(row)
    return rows

  def prediction_lines(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> List[dict]:
    """The lines `python -m prompt_tuning_jax.eval` writes (prediction_rows)."""
    return self.prediction_rows(examples, outputs, task_name=task_name)

  def score_examples(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    """'loss' (mean summed token loss per example), the task's metrics on the decoded strings (e.g. 'accuracy';
    text_to_text.score_strings) and on the rank-classification choices ('rank_accuracy'). An ensemble's
    unprefixed metrics are its majority vote's (also as 'vote_<metric>'), 'member_{k}_<metric>' each member's,
    'rank_<metric>' the mean-probability vote's, 'rank_vote_' and 'rank_member_{k}_' the rest."""
    scores = {"loss": float(np.mean(outputs["loss"]))}
    decoded_scores = text_to_text.score_strings(task_name, examples, self.decoded(outputs))
    scores |= decoded_scores
    if self.ensemble_size > 1:
      scores |= _prefixed("vote_", decoded_scores)
      for m, strings in enumerate(self._member_strings(outputs)):
        scores |= _prefixed(f"member_{m}_", text_to_text.score_strings(task_name, examples, strings))
    for prefix, choices in (self._rank_choices(outputs, task_name) or {}).items():
      scores |= _prefixed(prefix, text_to_text.score_strings(task_name, examples, choices))
    return scores

  def majority_class_accuracy(self, eval_sets) -> Optional[float]:
    """How often the most frequent target string is right (a mixture's: the mean over its tasks)."""
    def majority(examples):
      _, target_ids = np.unique(examples.targets_text, return_inverse=True)
      return metrics.majority_class_accuracy(target_ids)
    if self.task_targets is None:
      return majority(text_batching.concatenate(list(eval_sets.values())))
    return float(np.mean([majority(examples) for examples in eval_sets.values()]))

  def exportable(self, trained) -> Dict[str, np.ndarray]:
    """Trainable parameters as exported: a deep prompt's reparameterization collapsed to its table (per bank
    member)."""
    trained, prompt, c = dict(trained), self.module.prompt, self.module.config
    template, bank = prompt_template(prompt), isinstance(prompt, PromptBank)
    if isinstance(template, DeepPrompt) and template.reparam_hidden is not None and "prompt" in trained:
      collapse = lambda p: {"prefix": collapse_reparameterization(
          template, p, c.num_encoder_layers + c.num_decoder_layers, c.num_heads, c.d_kv)}
      trained["prompt"] = ({name: collapse(p) for name, p in trained["prompt"].items()} if bank else
                           collapse(trained["prompt"]))
    return {k: np.asarray(v) for k, v in trainable.flatten(trained).items()}

  def member_exports(self, trained) -> Dict[str, Dict[str, np.ndarray]]:
    """A bank's members as single-prompt exports, by member name (a mixture's task, an ensemble's
    'member_{k}'): member k's prompt/members_k/... under prompt/..., loadable alone as PROMPT_FILE."""
    if not isinstance(self.module.prompt, PromptBank):
      return {}
    flat = self.exportable(trained)
    names = self.member_names or tuple(f"member_{k}" for k in range(self.module.prompt.size))
    return {name: {key.replace(f"prompt/members_{k}/", "prompt/", 1): value for key, value in flat.items()
                   if key.startswith(f"prompt/members_{k}/")} for k, name in enumerate(names)}

  def export_metadata(self) -> Dict[str, Any]:
    c, prompt = self.module.config, prompt_template(self.module.prompt)  # A bank's: its members' kind and length.
    return {"model": "t5_1_1", "hidden_size": c.d_model, "num_hidden_layers": c.num_encoder_layers,
            "num_decoder_layers": c.num_decoder_layers, "num_attention_heads": c.num_heads,
            "vocab_size": c.vocab_size, "prompt_kind": type(prompt).__name__ if prompt is not None else "none",
            "prompt_length": prompt.length if prompt is not None else 0, "position_policy": "relative",
            "pooling": "none", **self._metadata}
