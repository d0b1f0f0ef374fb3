"""Served T5 prompts: text-to-text exports over one frozen T5, answering decoded text.

The T5 (size and prompt kind) comes from the gin model file the prompts were trained with
(models/t5_1_1_<size>_prompt.gin) and its weights from a checkpoint (Hugging Face or T5X), loaded once and
shared by every task. Each task is one compiled greedy decoder for its prompt (a batch holds one task's
requests: a bank of T5 prompts chosen per row is not built yet). `T5Bank` answers the Batcher as
ServingBank does; an answer is {"text": the decoded string}.
"""

import dataclasses
import itertools
import json
import threading
import time
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import errors, export
from prompt_tuning_jax.data import text_batching
from prompt_tuning_jax.models.encoder_decoder_model import EncoderDecoderModel
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.prompts.input import InputPrompt
from prompt_tuning_jax.serving import engine, inputs
from prompt_tuning_jax.serving.bank import Item

TEXT_TO_TEXT = "text_to_text"
DEFAULT_FEATURE_LENGTHS = {"inputs": 128, "targets": 16}


@gin.configurable
def t5_serving(model: PromptedT5 = gin.REQUIRED, sentencepiece_model: Optional[str] = None,
               extra_ids: int = 100) -> Tuple[PromptedT5, Optional[str], int]:
  """The gin model file's MODEL and vocabulary (bound by T5Bank's parse)."""
  return model, sentencepiece_model, extra_ids


@dataclasses.dataclass
class T5Task:
  """One served T5 export: `family`, `label_names` and `max_length` as a ServedTask's, for the API."""
  name: str
  task: str
  path: Path
  model: EncoderDecoderModel
  params: dict
  feature_lengths: Dict[str, int]
  label_names: Tuple[str, ...]
  compiled: Dict[Tuple[int, int], object] = dataclasses.field(default_factory=dict)
  family: str = TEXT_TO_TEXT
  prompt: Optional[object] = None

  @property
  def max_length(self) -> int:
    return int(self.feature_lengths["inputs"])

  @property
  def signature(self) -> tuple:
    return (self.name,)


class T5Bank:
  """Attributes: tasks (name -> T5Task), groups (one per task), compile_seconds, backbone_path."""

  def __init__(self, export_paths: Mapping[str, str], checkpoint_path: str, gin_files: Sequence[str],
               gin_bindings: Sequence[str] = (), max_batch: int = 32, lengths: Sequence[int] = (),
               max_length: Optional[int] = None):
    from prompt_tuning_jax import cli  # pylint: disable=g-import-not-at-top
    from prompt_tuning_jax.recipes import t5_train  # pylint: disable=g-import-not-at-top
    if not export_paths:
      raise errors.ConfigError("no export to serve: pass --export NAME=PATH (repeatable).")
    cli.register_configurables()
    cli.parse_gin(gin_files, [*gin_bindings, "t5_serving.model = %MODEL",
                              "t5_serving.sentencepiece_model = %SENTENCEPIECE_MODEL",
                              "t5_serving.extra_ids = %EXTRA_IDS"])
    self.module, sentencepiece_model, extra_ids = t5_serving()
    self.vocabulary = t5_train.configure(sentencepiece_model, extra_ids)
    t5_train.check_vocabulary(self.module, self.vocabulary)
    self.backbone_path = Path(checkpoint_path)
    self.backbone = jax.tree.map(jnp.asarray, t5_train.load_backbone(self.module, checkpoint_path, seed=0))
    self.max_batch, self.lengths, self.max_length = max_batch, tuple(lengths), max_length
    self.tasks: Dict[str, T5Task] = {}
    self.compile_seconds = 0.0
    self._lock = threading.Lock()
    for name, path in export_paths.items():
      self.add(name, path)

  @property
  def groups(self) -> Dict[tuple, object]:
    return {t.signature: t for t in self.tasks.values()}

  def add(self, name: str, path) -> T5Task:
    """Serves T5 export `path` as `name` (compiled before it is served)."""
    from prompt_tuning_jax.recipes import t5_eval, t5_train  # pylint: disable=g-import-not-at-top
    if name in self.tasks:
      raise errors.ConfigError(f"task {name!r} is already served (from {self.tasks[name].path}).")
    path = Path(path)
    if not path.exists():
      raise errors.MissingFileError(f"export {path} (task {name!r}) does not exist.")
    _, metadata = export.load_export(path)
    if metadata.get("model") != "t5_1_1":
      raise errors.CheckpointError(f"{path}: not a T5 export (model {metadata.get('model')!r}); serve encoder "
                                   "exports without --t5_gin_file.")
    task = metadata["task"]
    target_strings = t5_train.check_task(task) or ()
    lengths = {**DEFAULT_FEATURE_LENGTHS, **json.loads(metadata.get("feature_lengths", "{}"))}
    if self.max_length:
      lengths["inputs"] = self.max_length
    module = self.module
    if isinstance(module.prompt, InputPrompt) and "prompt_length" in metadata:  # Each export's own length.
      module = module.clone(prompt=module.prompt.clone(length=int(metadata["prompt_length"])))
    model = t5_train.contract_model(module, self.vocabulary, lengths)
    params = model.init_params(jax.random.key(0), self.backbone, model.batcher.input_shapes())
    params = t5_eval.load_prompt_file(params, path)
    served = T5Task(name, task, path, model, jax.device_put(params), lengths, tuple(target_strings))
    start = time.perf_counter()
    decode = jax.jit(lambda p, tokens: model.predict_batch_with_aux(p, {"encoder_input_tokens": tokens})[0])
    input_lengths = [n for n in (sorted(set(self.lengths) | {served.max_length}) if self.lengths else
                                 engine.length_buckets(served.max_length)) if n <= served.max_length]
    for batch, length in itertools.product(engine.batch_buckets(self.max_batch), input_lengths):
      served.compiled[(batch, length)] = decode.lower(served.params, jnp.zeros((batch, length), jnp.int32)).compile()
    self.compile_seconds += time.perf_counter() - start
    with self._lock:
      self.tasks = {**self.tasks, name: served}
    return served

  def group_names(self) -> List[List[str]]:
    return [[name] for name in self.tasks]

  def describe(self) -> List[dict]:
    return [{"name": t.name, "task": t.task, "family": t.family, "labels": list(t.label_names),
             "max_length": t.max_length, "prompt": type(t.model.module.prompt).__name__, "export": str(t.path),
             "group_size": 1} for t in self.tasks.values()]

  def _decode(self, task: T5Task, rows: List[dict]) -> List[str]:
    """Preprocessed rows -> decoded strings, in batches of max_batch at the compiled shapes."""
    lengths = sorted({length for _, length in task.compiled})
    batches = sorted({batch for batch, _ in task.compiled})
    out = []
    for start in range(0, len(rows), self.max_batch):
      chunk = [r["inputs"] for r in rows[start:start + self.max_batch]]
      size = next(b for b in batches if b >= len(chunk))
      tokens = text_batching.pad_to(chunk, size, lengths)
      decoded = np.asarray(task.compiled[tokens.shape](task.params, jnp.asarray(tokens)))[:len(chunk)]
      out += [self.vocabulary.decode(ids.tolist()) for ids in decoded]
    return out

  def _truncated(self, task: T5Task, features: List[dict], rows: List[dict]) -> List[bool]:
    """Whether each input lost tokens to the input length: a full-length one is rechecked one token longer."""
    full = [i for i, r in enumerate(rows) if len(r["inputs"]) >= task.max_length]
    out = [False] * len(rows)
    if full:
      longer = inputs.preprocess(task.task, [features[i] for i in full],
                                 {**task.feature_lengths, "inputs": task.max_length + 1}, self.vocabulary)
      for i, row in zip(full, longer):
        out[i] = len(row["inputs"]) > task.max_length
    return out

  def answer(self, items: Sequence[Item]) -> List[List[dict]]:
    """Answers a round: per task one preprocessing pass over all its inputs, then its decoder."""
    with self._lock:
      tasks = self.tasks
    out: List[List[dict]] = [[] for _ in items]
    by_task: Dict[str, List[int]] = {}
    for i, item in enumerate(items):
      by_task.setdefault(item.task, []).append(i)
    for name, indices in by_task.items():
      task = tasks[name]
      features = [row for i in indices for rows in items[i].rows for row in rows]
      rows = inputs.preprocess(task.task, features, task.feature_lengths, self.vocabulary)
      texts = iter(self._decode(task, rows))
      cut = iter(self._truncated(task, features, rows))
      for i in indices:
        for _ in items[i].rows:
          truncated = next(cut)
          out[i].append({"text": next(texts), **({"truncated": True} if truncated else {})})
    return out
