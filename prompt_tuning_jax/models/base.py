"""The model contract the training core drives, shaped like t5x's `BaseModel`.

A model wraps one flax module (backbone, prompt and head) and says how a batch becomes a
loss, scores and predictions. The t5x methods:

  get_initial_variables(rng, input_shapes) -> {'params', 'params_axes'}
  loss_fn(params, batch, dropout_rng)      -> (loss, metrics)
  score_batch(params, batch)               -> [B] log-likelihood of each example's targets
  predict_batch_with_aux(params, batch)    -> (predictions, aux)
  FEATURE_CONVERTER_CLS                    -> the seqio feature converter whose features batches carry

and what one `fit` needs beyond them to train and evaluate any model:

  batcher                                  -> loads a task's examples, orders and pads their batches
  init_params(rng, backbone, input_shapes) -> the loaded backbone plus a fresh prompt and head
  param_axes(input_shapes)                 -> logical PartitionSpec per parameter path (the partitioner's)
  eval_batch(params, batch)                -> {name: [B, ...]}, evaluation's device half (jitted, sharded)
  score_examples(task, examples, outputs)  -> metrics, evaluation's host half
  prediction_lines(task, examples, outputs) -> predictions.jsonl's lines (id, prediction, target per example)
  exportable(trained), export_metadata()   -> what an export file stores
  member_exports(trained)                  -> further exports (a prompt bank's members, each alone)

`params` is the whole parameter tree (frozen and trainable merged). The training core
differentiates with respect to the trainable part only and passes the frozen part as a
separate, non-donated argument: frozen weights get no gradient and no optimizer state.
loss_fn's metrics are sums over the batch: 'correct' and 'count' (training accuracy) and
'tokens' (throughput), plus whatever else the model reports.
"""

import abc
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from jax.sharding import PartitionSpec

from prompt_tuning_jax import axes, trainable

InputShapes = Mapping[str, Sequence[int]]
Batch = Mapping[str, jax.Array]


class BaseModel(abc.ABC):
  """A flax module under t5x's model contract (see the module docstring)."""

  FEATURE_CONVERTER_CLS: Optional[type] = None

  def __init__(self, module: nn.Module, batcher=None):
    self.module, self._batcher = module, batcher

  # How the module is called: subclasses map batches onto its arguments.

  @abc.abstractmethod
  def init_arguments(self, input_shapes: InputShapes) -> Tuple[tuple, dict]:
    """(args, kwargs) of a deterministic module call on dummy inputs of `input_shapes`."""

  def _init(self, rng, input_shapes: InputShapes):
    args, kwargs = self.init_arguments(input_shapes)
    return self.module.init({"params": rng}, *args, **kwargs)

  def get_initial_variables(self, rng: jax.Array, input_shapes: InputShapes,
                            input_types: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Freshly initialised variables: 'params' (plain arrays) and t5x's 'params_axes' (logical axis names)."""
    del input_types
    boxed = self._init(rng, input_shapes)["params"]
    return {"params": nn.meta.unbox(boxed), "params_axes": axes.params_axes(boxed)}

  def param_axes(self, input_shapes: InputShapes) -> Dict[str, PartitionSpec]:
    """'path/to/param' -> its logical PartitionSpec, from an abstract init (no FLOPs, no memory)."""
    boxed = jax.eval_shape(lambda rng: self._init(rng, input_shapes), jax.random.key(0))["params"]
    return traverse_util.flatten_dict(nn.get_partition_spec(boxed), sep="/")

  def init_params(self, rng: jax.Array, backbone, input_shapes: InputShapes) -> dict:
    """The loaded backbone plus freshly initialised prompt and head.

    Runs the module with the backbone given and the 'params' collection mutable, so only what is
    missing is initialised (t5x's fallback-to-scratch) and vocabulary-based prompt initializers see
    the loaded embeddings.
    """
    args, kwargs = self.init_arguments(input_shapes)

    def init(rng, backbone):
      variables = self.module.apply({"params": {"backbone": backbone}}, *args, **kwargs, rngs={"params": rng},
                                    mutable=["params"])[1]
      return nn.meta.unbox(variables["params"])

    made = set(trainable.flatten(jax.eval_shape(init, rng, backbone)["backbone"]))
    if made != set(trainable.flatten(backbone)):
      raise ValueError("loaded backbone parameters do not match the model's backbone: "
                       f"{sorted(made ^ set(trainable.flatten(backbone)))[:10]}")
    fresh = jax.jit(lambda r, b: {k: v for k, v in init(r, b).items() if k != "backbone"})(rng, backbone)
    return {**fresh, "backbone": jax.tree.map(jnp.asarray, backbone)}

  # t5x's contract.

  @abc.abstractmethod
  def loss_fn(self, params, batch: Batch, dropout_rng: Optional[jax.Array]) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """(loss, metrics) of a batch with dropout drawn from `dropout_rng` (None: no dropout)."""

  @abc.abstractmethod
  def score_batch(self, params, batch: Batch) -> jax.Array:
    """[B] each example's log-likelihood of its targets, no dropout."""

  @abc.abstractmethod
  def predict_batch_with_aux(self, params, batch: Batch, rng: Optional[jax.Array] = None) -> Tuple[jax.Array, dict]:
    """(predictions [B, ...], auxiliary outputs) of a batch, no dropout."""

  # Evaluation and export.

  @property
  def batcher(self):
    """The model's batching (models' batchers: `load`, `train_batches`, `eval_batches`, `input_shapes`)."""
    if self._batcher is None:
      raise ValueError(f"this {type(self).__name__} was built without a batcher; pass one (EncoderBatcher, "
                       "TextBatcher) to train or evaluate it.")
    return self._batcher

  @abc.abstractmethod
  def eval_batch(self, params, batch: Batch) -> Dict[str, jax.Array]:
    """What evaluation reads of a batch, each output with the batch axis first ([B, ...])."""

  @abc.abstractmethod
  def score_examples(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> Dict[str, float]:
    """Metrics of one task's split from `eval_batch`'s outputs of each example (in example order)."""

  def prediction_lines(self, task_name: str, examples, outputs: Dict[str, List[np.ndarray]]) -> Optional[List[dict]]:
    """predictions.jsonl's lines (an id, the prediction and the target per example) from `eval_batch`'s outputs
    of `task_name`'s examples; None: the model writes no predictions."""
    del task_name, examples, outputs
    return None

  def majority_class_accuracy(self, eval_sets: Mapping[str, Any]) -> Optional[float]:
    """The baseline results.json reports beside the selection metric (None when there is none)."""
    del eval_sets
    return None

  @abc.abstractmethod
  def exportable(self, trained) -> Dict[str, np.ndarray]:
    """The trainable parameters as an export stores them, by '/'-joined path."""

  def member_exports(self, trained) -> Dict[str, Dict[str, np.ndarray]]:
    """Exports written beside the run's, by name (export/<name>.safetensors): e.g. each prompt of a bank alone;
    {} (the default): none."""
    del trained
    return {}

  @abc.abstractmethod
  def export_metadata(self) -> Dict[str, Any]:
    """What a reader of an export needs to know about the model it fits."""
