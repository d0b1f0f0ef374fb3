"""The encoder model under the contract (models/base.py): an EncoderClassifier (BERT-family
backbone, prompt, head) for classification, multiple choice, token and span tasks, ensembles
and prompt banks.

Batches (batching.pad_batch): input_ids, token_type_ids, attention_mask [B, T] ([B, K, T] for
multiple choice), labels [B] / [B, 2] / [B, T], task_ids and weights [B], and span tasks'
context_mask [B, T]. An ensemble of K members sees every example: the batch is repeated K
times with task_ids = the member index, and outputs come back as [B, K, ...].
"""

from typing import Any, Dict, List, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import predictions, trainable
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.tasks import metrics, scoring
from prompt_tuning_jax.models.base import BaseModel, InputShapes
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.data.batching import IGNORE_LABEL
from prompt_tuning_jax.models.heads import span_loss, token_classification_loss, weighted_cross_entropy
from prompt_tuning_jax.prompts.bank import PromptBank, prompt_template
from prompt_tuning_jax.prompts.deep import DeepPrompt, collapse_reparameterization, resolve_layers
from prompt_tuning_jax.tasks import loading


def for_ensemble(batch, size: int, ids_key: str = "task_ids"):
  """Repeats a batch for each of `size` ensemble members: arrays [B, ...] -> [K * B, ...],
  with batch[ids_key] = the member index (member k's rows are k*B ... k*B + B - 1). The encoder's
  members are picked by task_ids, the T5's (encoder_decoder_model.py) by prompt_ids."""
  if size == 1:
    return batch
  tiled = {k: jnp.concatenate([v] * size) for k, v in batch.items()}
  b = batch[ids_key].shape[0]
  return tiled | {ids_key: jnp.repeat(jnp.arange(size, dtype=jnp.int32), b)}


def task_loss(head_kind: str, outputs, batch):
  """The loss of the model's outputs for its head kind (models.classifier.HEAD_KINDS) ->
  (weighted mean loss, {"correct", "count"}): examples right ('sequence'; 'span': start and end both
  right) or labelled tokens right ('token')."""
  if head_kind == "token":
    weights = (batch["labels"] != IGNORE_LABEL) * batch["weights"][:, None]
    return token_classification_loss(outputs, batch["labels"], weights)
  if head_kind == "span":
    # A window that does not hold the whole answer is labelled [CLS] (index 0), so [CLS] stays in the softmax.
    context_mask = batch["context_mask"].at[:, 0].set(1)
    return span_loss(outputs[..., 0], outputs[..., 1], batch["labels"][:, 0], batch["labels"][:, 1], context_mask,
                     batch["weights"])
  return weighted_cross_entropy(outputs, batch["labels"], batch["weights"])


def _label_log_likelihood(head_kind: str, outputs, batch) -> jax.Array:
  """[B] log p(labels) of each example under outputs [B, ...] (token tasks: summed over labelled tokens)."""
  log_probs = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-2 if head_kind == "span" else -1)
  if head_kind == "span":  # [B, T, 2]: start and end positions.
    picked = jnp.take_along_axis(log_probs, batch["labels"][:, None, :], axis=1)[:, 0]
    return picked.sum(-1)
  labels = jnp.maximum(batch["labels"], 0)
  picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
  if head_kind == "token":
    return jnp.sum(picked * (batch["labels"] != IGNORE_LABEL), axis=-1)
  return picked


class EncoderBatcher:
  """The encoder's batches of a task: examples tokenized by the task (batching.Examples), length-bucketed
  train batches in batching.BatchOrder's order, and evaluation batches shortest first."""

  def __init__(self, max_length: int, data_dir=None, vocabulary=None):
    self.max_length = max_length
    self.data_dir, self.vocabulary = data_dir, vocabulary  # None: the shipped data, the default vocabulary.

  def load(self, task_name: str, split: str, task_id: int = 0) -> batching.Examples:
    return loading.load_examples(task_name, split, self.max_length, task_id=task_id, data_dir=self.data_dir,
                              vocabulary=self.vocabulary)

  def concatenate(self, parts) -> batching.Examples:
    return batching.concatenate(parts)

  def train_batches(self, examples: batching.Examples, batch_size: int, seed: int) -> batching.TrainBatches:
    return batching.TrainBatches(examples, batch_size, self.max_length, seed)

  def eval_batches(self, examples: batching.Examples, batch_size: int):
    return batching.indexed_eval_batches(examples, batch_size, self.max_length)

  def input_shapes(self, examples: batching.Examples) -> Dict[str, tuple]:
    """Dummy input shapes for initialisation: one example ([1, T], or [1, K, T] for choices)."""
    return {"input_ids": examples.input_ids[0][None].shape}


class EncoderModel(BaseModel):
  """An EncoderClassifier under the model contract; `ensemble_size` K members see every example."""

  def __init__(self, module: EncoderClassifier, ensemble_size: int = 1, batcher: Optional[EncoderBatcher] = None):
    super().__init__(module, batcher)
    self.ensemble_size = ensemble_size

  def init_arguments(self, input_shapes: InputShapes):
    dummy = jnp.zeros(tuple(input_shapes["input_ids"]), jnp.int32)
    return (dummy, dummy, dummy), {}

  def _apply(self, params, batch, dropout_rng=None) -> jax.Array:
    rngs = None if dropout_rng is None else {"dropout": dropout_rng}
    return self.module.apply({"params": params}, batch["input_ids"], batch["token_type_ids"], batch["attention_mask"],
                             task_ids=batch["task_ids"], deterministic=dropout_rng is None, rngs=rngs)

  def loss_fn(self, params, batch, dropout_rng):
    """Mean loss over the members (each sees every example); metrics correct / count / tokens."""
    batch = for_ensemble(batch, self.ensemble_size)
    loss, stats = task_loss(self.module.head_kind, self._apply(params, batch, dropout_rng), batch)
    return loss, {**stats, "tokens": batch["attention_mask"].sum()}

  def eval_batch(self, params, batch) -> Dict[str, jax.Array]:
    """{'outputs': float32 outputs [B, K, ...]}, K = ensemble_size: e.g. [B, K, C] logits of a sequence head."""
    outputs = self._apply(params, for_ensemble(batch, self.ensemble_size))
    members = outputs.astype(jnp.float32).reshape((self.ensemble_size, -1) + outputs.shape[1:])
    return {"outputs": jnp.moveaxis(members, 0, 1)}

  def score_batch(self, params, batch) -> jax.Array:
    """[B] log-likelihood of each example's labels, averaged over ensemble members."""
    outputs = jnp.moveaxis(self.eval_batch(params, batch)["outputs"], 1, 0)  # [K, B, ...]
    return jnp.mean(jax.vmap(lambda o: _label_log_likelihood(self.module.head_kind, o, batch))(outputs), axis=0)

  def predict_batch_with_aux(self, params, batch, rng=None):
    """(classes [B] by the members' mean probability | tags [B, T] | argmax (start, end) [B, 2], {'outputs'})."""
    del rng
    outputs = self.eval_batch(params, batch)["outputs"]
    if self.module.head_kind == "span":
      return jnp.argmax(outputs[:, 0], axis=1).astype(jnp.int32), {"outputs": outputs}
    return jnp.argmax(jax.nn.softmax(outputs, axis=-1).mean(1), axis=-1), {"outputs": outputs}

  def score_examples(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    return scoring.score(task_name, examples, outputs["outputs"])

  def prediction_lines(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> List[dict]:
    """The lines `python -m prompt_tuning_jax.eval` writes for an export (predictions.prediction_lines)."""
    return predictions.prediction_lines(task_name, examples, outputs["outputs"])

  def majority_class_accuracy(self, eval_sets: Mapping[str, Any]) -> Optional[float]:
    if self.module.head_kind != "sequence":
      return None
    return float(np.mean([metrics.majority_class_accuracy(e.labels) for e in eval_sets.values()]))

  def exportable(self, trained) -> Dict[str, np.ndarray]:
    """Trainable parameters with deep prompts' reparameterization collapsed (per bank member)."""
    trained, module = dict(trained), self.module
    bank, template = isinstance(module.prompt, PromptBank), prompt_template(module.prompt)
    if isinstance(template, DeepPrompt) and template.reparam_hidden is not None and "prompt" in trained:
      c = module.config
      collapse = lambda p: {"prefix": collapse_reparameterization(template, p, c.num_hidden_layers,
                                                                  c.num_attention_heads, c.head_dim)}
      trained["prompt"] = ({name: collapse(p) for name, p in trained["prompt"].items()} if bank else
                           collapse(trained["prompt"]))
    return {k: np.asarray(v) for k, v in trainable.flatten(trained).items()}

  def export_metadata(self) -> Dict[str, Any]:
    module = self.module
    c, template = module.config, prompt_template(module.prompt)
    layers = (list(resolve_layers(template.layers, c.num_hidden_layers)) if isinstance(template, DeepPrompt) else
              None)
    return {"hidden_size": c.hidden_size, "num_hidden_layers": c.num_hidden_layers,
            "num_attention_heads": c.num_attention_heads,
            "prompt_kind": type(template).__name__ if template else "none", "prompt_length": module.prompt_length(),
            "position_policy": getattr(template, "position_policy", "none"), "pooling": module.pooling,
            "model_type": c.model_type, "head_kind": module.head_kind,
            **({"prompt_layers": layers} if layers is not None else {})}
