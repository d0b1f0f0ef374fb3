"""One validation pass over a run's settings, before anything is loaded, built or compiled.

The trainers (recipes/encoder.py `train`, recipes/t5_train.py `train_seq2seq`) and the evaluators
(recipes/t5_eval.py, recipes/export_eval.py) call these first, so a bad setting fails in about a second
with one errors.ConfigError line that names the setting (its macro and the parameter it feeds), the value,
the allowed range and the fix, instead of a traceback or a wrong run minutes later:

- `check_run_settings`: MODEL_DIR, TASK_FEATURE_LENGTHS (the keys the task needs, lengths >= 1),
  TRAIN_STEPS (>= 0: 0 evaluates the initial or imported prompt once), BATCH_SIZE, the eval batch size,
  EVAL_PERIOD, the log period, keep_checkpoints, RANDOM_SEED;
- `check_learning_rate` (the optimizers adamw and adafactor call it: gin builds them before the trainer);
- `check_prompt`: PROMPT_LENGTH >= 1 for prompt methods, a non-empty PROMPT_LAYERS, a P-Tuning template;
- `check_step_memory`: a lower bound on what one train step keeps in memory (activations kept for the
  backward pass, parameters, gradients, optimizer state) against what the machine has available.
"""

import dataclasses
import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Tuple

from prompt_tuning_jax import errors

MAX_SEED = 2**32 - 1  # jax.random.key wraps larger seeds around: 2**32 would give seed 0's run.


def is_int(value: Any) -> bool:
  return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def setting(macro: Optional[str], parameter: str, value: Any) -> str:
  """"BATCH_SIZE=0 (train.batch_size)", or "train.log_period=0" when no macro feeds the parameter."""
  return f"{macro}={value!r} ({parameter})" if macro else f"{parameter}={value!r}"


def flag(macro: Optional[str], parameter: str) -> str:
  return f"--gin.{macro or parameter}"


def check_int(value: Any, macro: Optional[str], parameter: str, minimum: int, fix: str,
              maximum: Optional[int] = None, allow_none: bool = False) -> None:
  """An integer in [minimum, maximum] (or None when `allow_none`); else one line naming setting and fix."""
  if value is None and allow_none:
    return
  if is_int(value) and value >= minimum and (maximum is None or value <= maximum):
    return
  allowed = f"an integer >= {minimum}" if maximum is None else f"an integer in [{minimum}, {maximum}]"
  raise errors.ConfigError(f"{setting(macro, parameter, value)} must be {allowed}"
                           f"{' or None' if allow_none else ''}; {fix}.")


def check_output_dir(value: Any, macro: str, parameter: str) -> None:
  """A non-empty path: '' would write a run's outputs into the current directory."""
  if isinstance(value, (str, os.PathLike)) and str(value).strip():
    return
  raise errors.ConfigError(f"{setting(macro, parameter, value)} must be a non-empty directory path (an "
                           f"empty one writes into the current directory); set {flag(macro, parameter)}=\"'runs/x'\".")


def check_feature_lengths(feature_lengths: Any, keys: Sequence[str], parameter: str) -> None:
  """TASK_FEATURE_LENGTHS: a dict with a length >= 1 for every feature in `keys` (and for any other it gives)."""
  wanted = "{" + ", ".join(f"'{k}': N" for k in keys) + "}"
  if not isinstance(feature_lengths, Mapping):
    raise errors.ConfigError(f"{setting('TASK_FEATURE_LENGTHS', parameter, feature_lengths)} must be a dict "
                             f"{wanted} of token counts; set --gin.TASK_FEATURE_LENGTHS=\"{wanted}\".")
  missing = [k for k in keys if k not in feature_lengths]
  if missing:
    raise errors.ConfigError(f"{setting('TASK_FEATURE_LENGTHS', parameter, dict(feature_lengths))} has no length "
                             f"for {missing}; this task needs {wanted} (lengths >= 1).")
  for key, length in feature_lengths.items():
    if not is_int(length) or length < 1:
      raise errors.ConfigError(f"TASK_FEATURE_LENGTHS[{key!r}]={length!r} ({parameter}) must be an integer >= 1 "
                               f"(tokens per example, special tokens included); set --gin.TASK_FEATURE_LENGTHS="
                               f"\"{wanted}\".")


def check_run_settings(parameter: str, *, model_dir: Any, feature_lengths: Any, feature_keys: Sequence[str],
                       train_steps: Any, batch_size: Any, eval_batch_size: Any = None, eval_period: Any = 1,
                       log_period: Any = 1, keep_checkpoints: Any = 1, seed: Any = 0,
                       max_consecutive_nonfinite: Any = 0, **_) -> None:
  """A trainer's loop settings (fit.FitOptions' fields and its feature lengths); `parameter` is the trainer's
  gin name ('train', 'train_seq2seq'). Extra keyword arguments (the trainer's other locals) are ignored."""
  check_output_dir(model_dir, "MODEL_DIR", f"{parameter}.model_dir")
  check_feature_lengths(feature_lengths, feature_keys, f"{parameter}.feature_lengths")
  check_int(train_steps, "TRAIN_STEPS", f"{parameter}.train_steps", 0,
            "set --gin.TRAIN_STEPS to the total number of training steps (0 evaluates the initial prompt, or "
            "one imported with train.init_trainable_from, once without training)")
  check_int(batch_size, "BATCH_SIZE", f"{parameter}.batch_size", 1,
            "set --gin.BATCH_SIZE to the examples per training step, e.g. 32")
  check_int(eval_batch_size, None, f"{parameter}.eval_batch_size", 1,
            f"set --gin.{parameter}.eval_batch_size to the examples per evaluation batch (None: BATCH_SIZE)",
            allow_none=True)
  check_int(eval_period, "EVAL_PERIOD", f"{parameter}.eval_period", 1,
            "set --gin.EVAL_PERIOD to the steps between evaluations and checkpoints, e.g. 100")
  check_int(log_period, None, f"{parameter}.log_period", 1,
            f"set --gin.{parameter}.log_period to the steps between training-metric lines, e.g. 10")
  check_int(keep_checkpoints, None, f"{parameter}.keep_checkpoints", 1,
            f"set --gin.{parameter}.keep_checkpoints to how many recent checkpoints to keep, e.g. 3")
  check_int(seed, "RANDOM_SEED", f"{parameter}.seed", 0, "set --gin.RANDOM_SEED to a non-negative integer, e.g. 0",
            maximum=MAX_SEED)
  check_int(max_consecutive_nonfinite, None, f"{parameter}.max_consecutive_nonfinite", 0,
            "set it to how many non-finite updates in a row may be skipped, e.g. 5")


def output_setting(parameter: str) -> str:
  """The macro of an evaluation's or inference's output directory, by its gin entry point."""
  return "INFER_OUTPUT_DIR" if parameter.startswith("infer") else "EVAL_OUTPUT_DIR"


def check_eval_settings(parameter: str, *, output_dir: Any, batch_size: Any, feature_lengths: Any = None,
                        feature_keys: Sequence[str] = (), beam_size: Any = 1) -> None:
  """An evaluation's or inference's settings (recipes/t5_eval.py, recipes/export_eval.py)."""
  check_output_dir(output_dir, output_setting(parameter), f"{parameter}.output_dir")
  check_int(batch_size, "BATCH_SIZE", f"{parameter}.batch_size", 1,
            "set --gin.BATCH_SIZE to the examples per batch, e.g. 32")
  if feature_keys:
    check_feature_lengths(feature_lengths, feature_keys, f"{parameter}.feature_lengths")
  check_int(beam_size, "BEAM_SIZE", f"{parameter}.beam_size", 1, "set --gin.BEAM_SIZE to 1 (greedy) or more")


def check_learning_rate(value: Any, parameter: str) -> None:
  """LEARNING_RATE: a finite number >= 0 (a negative one climbs the loss; 0 keeps the initialisation, which a
  test of an imported prompt may want)."""
  if callable(value) or (isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
                         and value >= 0):  # A callable is an optax schedule (Adafactor takes one).
    return
  raise errors.ConfigError(f"{setting('LEARNING_RATE', parameter, value)} must be a number >= 0; set "
                           "--gin.LEARNING_RATE to a positive number, e.g. 1e-2 (no quotes).")


def _prompt_template(prompt):
  """prompts/bank.prompt_template, imported when needed: this module stays importable without flax."""
  from prompt_tuning_jax.prompts.bank import prompt_template  # pylint: disable=g-import-not-at-top
  return prompt_template(prompt)


NO_PROMPT_METHODS = " (to train without a prompt use gin/methods/bitfit.gin or finetune.gin)"


def check_prompt(prompt, num_layers: int, hint: str = NO_PROMPT_METHODS) -> None:
  """A prompt method's shape: PROMPT_LENGTH >= 1 (a zero-size prompt trains for minutes, then cannot be
  checkpointed), a non-empty set of prompted layers out of `num_layers`, a P-Tuning template that sums to the
  length. `prompt`: the model's DeepPrompt, InputPrompt, PTuningEncoder, a PromptBank of one, or None; `hint`
  ends the PROMPT_LENGTH message (the encoder's methods without a prompt)."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.prompts.deep import DeepPrompt, resolve_layers
  from prompt_tuning_jax.prompts.ptuning import PTuningEncoder, check_template
  # pylint: enable=g-import-not-at-top
  prompt = _prompt_template(prompt)
  if prompt is None:
    return
  kind = type(prompt).__name__
  if isinstance(prompt, PTuningEncoder):
    if not all(is_int(n) and n >= 0 for n in prompt.template) or sum(prompt.template) < 1:
      raise errors.ConfigError(f"PTUNING_TEMPLATE={tuple(prompt.template)} (PTuningEncoder.template) must be "
                               "virtual-token counts >= 0 with a sum >= 1; set e.g. --gin.PTUNING_TEMPLATE=(3, 3).")
    check_template(prompt.template, prompt.length)
    return
  check_int(prompt.length, "PROMPT_LENGTH", f"{kind}.length", 1,
            f"set --gin.PROMPT_LENGTH to the number of virtual tokens, e.g. 20{hint}")
  if isinstance(prompt, DeepPrompt):
    check_int(prompt.reparam_hidden, "PROMPT_REPARAM_HIDDEN", "DeepPrompt.reparam_hidden", 1,
              "set --gin.PROMPT_REPARAM_HIDDEN to the MLP's width, e.g. 512, or None for no MLP", allow_none=True)
    if not resolve_layers(prompt.layers, num_layers):
      raise errors.ConfigError(f"PROMPT_LAYERS={prompt.layers!r} (DeepPrompt.layers) selects no layer; use None "
                               f"(all {num_layers}), 'top k' or 'bottom k' with 1 <= k <= {num_layers}, or a "
                               f"non-empty list of layer indices 0..{num_layers - 1}.")


@dataclasses.dataclass(frozen=True)
class AttentionStack:
  """`layers` transformer layers whose queries are `queries` long and attend over `keys` positions."""
  layers: int
  queries: int
  keys: int
  heads: int
  hidden: int
  ffn: int


@dataclasses.dataclass(frozen=True)
class StepMemory:
  """A lower bound on the bytes one train step holds (see `estimate_step_memory`)."""
  activations: int
  parameters: int
  gradients_and_optimizer: int

  @property
  def total(self) -> int:
    return self.activations + self.parameters + self.gradients_and_optimizer


def estimate_step_memory(batch_size: int, stacks: Sequence[AttentionStack], activation_bytes: int,
                         frozen_parameters: int, trainable_parameters: int, optimizer_slots: int,
                         remat: bool = False) -> StepMemory:
  """A lower bound on a train step's memory: what the backward pass cannot do without, per layer of each stack,
  the attention probabilities [B, N, Q, K] and, per query position, the layer's input, attention output and
  feed-forward activation [B, Q, 2H + F] (XLA fuses the rest; its own estimate for MiniLM at B=8, Q=64, P=20 is
  42 MiB, this 39 MiB); with `remat` only each layer's input [B, Q, H] and one layer's set. Parameters are
  float32; the trainable ones also have a gradient and `optimizer_slots` moments."""
  per_layer = [batch_size * (s.heads * s.queries * s.keys + s.queries * (2 * s.hidden + s.ffn))
               for s in stacks if s.layers]
  if remat:
    elements = sum(batch_size * s.queries * s.hidden * s.layers for s in stacks) + max(per_layer, default=0)
  else:
    elements = sum(n * s.layers for n, s in zip(per_layer, [s for s in stacks if s.layers]))
  return StepMemory(elements * activation_bytes, 4 * (frozen_parameters + trainable_parameters),
                    4 * trainable_parameters * (1 + optimizer_slots))


def _host_available_bytes() -> Optional[int]:
  """MemAvailable, or less where a cgroup limits this process's memory."""
  available = None
  try:
    for line in Path("/proc/meminfo").read_text().splitlines():
      if line.startswith("MemAvailable:"):
        available = int(line.split()[1]) * 1024
  except (OSError, ValueError):
    pass
  try:
    limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    if limit != "max":
      used = int(Path("/sys/fs/cgroup/memory.current").read_text())
      available = min(available or math.inf, int(limit) - used)
  except (OSError, ValueError):
    pass
  return available


def available_memory(device=None) -> Tuple[Optional[int], str]:
  """(bytes free for one step, where): the device's free memory where jax reports it, else the host's."""
  if device is None:
    import jax  # pylint: disable=g-import-not-at-top
    device = jax.local_devices()[0]
  stats = None
  if device.platform != "cpu":
    try:
      stats = device.memory_stats()
    except Exception:  # pylint: disable=broad-except  # Backends without memory statistics raise.
      stats = None
  if stats and "bytes_limit" in stats:
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)), f"{device.device_kind} {device.id}"
  return _host_available_bytes(), "host RAM"


def gib(n: float) -> str:
  return f"{n / 2**30:,.1f} GiB"


def check_step_memory(memory: StepMemory, what: str, devices: int = 1, model_parallel: int = 1,
                      available: Optional[Tuple[Optional[int], str]] = None, remat: Optional[bool] = None) -> None:
  """Refuses a run whose step cannot fit: `memory` (whole step) against the available memory. On an
  accelerator each of `devices` holds its share (parameters split `model_parallel` ways, activations over
  every device); CPU devices share the host's RAM, which must hold it all. `what`: the shape, for the message;
  `remat`: the model's REMAT setting (None: the model has none)."""
  free, where = available if available is not None else available_memory()
  if free is None:
    return
  on_host = where == "host RAM"
  need = memory.total if on_host else ((memory.parameters + memory.gradients_and_optimizer) // model_parallel +
                                       memory.activations // devices)
  if need <= free:
    return
  raise errors.ConfigError(
      f"a train step needs at least {gib(need)}{'' if on_host else ' per device'} ({what}: activations kept for "
      f"the backward pass {gib(memory.activations)}, parameters {gib(memory.parameters)}, gradients and optimizer "
      f"state {gib(memory.gradients_and_optimizer)}) but {where} has {gib(free)} available; lower BATCH_SIZE, "
      f"TASK_FEATURE_LENGTHS or PROMPT_LENGTH{', set REMAT=True' if remat is False else ''}, or use more devices.")


def prompt_positions(prompt) -> Tuple[int, int]:
  """(positions added to the input, key/value positions added per prompted layer) of a prompt: input prompts
  add to the sequence, deep prompts only to the keys of their layers."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.prompts.deep import DeepPrompt
  # pylint: enable=g-import-not-at-top
  prompt = _prompt_template(prompt)
  if prompt is None:
    return 0, 0
  if isinstance(prompt, DeepPrompt):
    return 0, int(prompt.length)
  return int(prompt.length), 0


def prompt_parameters(prompt, prompted_layers: int, hidden: int) -> int:
  """The prompt's table (deep: [L', 2, P, H]; input: [P, H]), its reparameterization aside."""
  added, deep = prompt_positions(prompt)
  return 2 * prompted_layers * deep * hidden if deep else added * hidden


def _describe(batch_size: int, text: str, prompt_length: int) -> str:
  return f"BATCH_SIZE={batch_size}, {text}, PROMPT_LENGTH={prompt_length}"


def check_encoder_step(module, config, batch_size: int, max_length: int, trainable_patterns: Sequence[str],
                       available: Optional[Tuple[Optional[int], str]] = None, devices: int = 1,
                       model_parallel: int = 1) -> StepMemory:
  """check_step_memory for the encoder trainer's `module` (an EncoderClassifier whose prompt passed
  check_prompt) on the backbone `config` (models/bert.py BertConfig) at BATCH_SIZE and
  TASK_FEATURE_LENGTHS['inputs']."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax import trainable
  from prompt_tuning_jax.prompts.deep import resolve_layers
  # pylint: enable=g-import-not-at-top
  layers, hidden = config.num_hidden_layers, config.hidden_size
  added, deep = prompt_positions(module.prompt)
  prompted = len(resolve_layers(_prompt_template(module.prompt).layers, layers)) if deep else 0
  queries = max_length + added
  stack = lambda n, keys: AttentionStack(n, queries, keys, config.num_attention_heads, hidden, config.intermediate_size)
  backbone = ((config.vocab_size + config.max_position_embeddings + config.type_vocab_size) * hidden +
              layers * (4 * hidden * hidden + 2 * hidden * config.intermediate_size))
  trained = prompt_parameters(module.prompt, prompted, hidden)
  if trainable.is_trainable("backbone/layers_0/attention/query/kernel", trainable_patterns):  # Fine-tuning.
    backbone, trained = 0, trained + backbone
  memory = estimate_step_memory(batch_size, [stack(prompted, queries + deep), stack(layers - prompted, queries)],
                                4, backbone, trained, optimizer_slots=0, remat=config.remat)
  check_step_memory(memory, _describe(batch_size, f"TASK_FEATURE_LENGTHS['inputs']={max_length}",
                                      _prompt_template(module.prompt).length if module.prompt is not None else 0),
                    devices, model_parallel, available, remat=config.remat)
  return memory


def check_t5_step(model, feature_lengths: Mapping[str, int], batch_size: int,
                  available: Optional[Tuple[Optional[int], str]] = None, devices: int = 1,
                  model_parallel: int = 1) -> StepMemory:
  """check_step_memory for the T5 trainer's PromptedT5 `model` (its prompt passed check_prompt; only the
  prompt trains) at BATCH_SIZE and TASK_FEATURE_LENGTHS {'inputs', 'targets'}."""
  # pylint: disable=g-import-not-at-top
  import numpy as np
  from prompt_tuning_jax.prompts.deep import resolve_layers
  # pylint: enable=g-import-not-at-top
  c = model.config
  total = c.num_encoder_layers + c.num_decoder_layers
  added, deep = prompt_positions(model.prompt)
  prompted = set(resolve_layers(_prompt_template(model.prompt).layers, total)) if deep else set()
  inputs, targets = int(feature_lengths["inputs"]) + added, int(feature_lengths["targets"])
  enc_prompted = sum(1 for i in prompted if i < c.num_encoder_layers)
  dec_prompted = len(prompted) - enc_prompted
  stack = lambda n, q, k: AttentionStack(n, q, k, c.num_heads, c.d_model, c.d_ff)
  stacks = [stack(enc_prompted, inputs, inputs + deep), stack(c.num_encoder_layers - enc_prompted, inputs, inputs),
            stack(dec_prompted, targets, targets + deep + inputs),
            stack(c.num_decoder_layers - dec_prompted, targets, targets + inputs)]
  attention = c.num_heads * c.d_kv
  backbone = (c.vocab_size * c.d_model * (1 if c.tie_word_embeddings else 2) +
              c.num_encoder_layers * (4 * c.d_model * attention + 3 * c.d_model * c.d_ff) +
              c.num_decoder_layers * (8 * c.d_model * attention + 3 * c.d_model * c.d_ff))
  memory = estimate_step_memory(batch_size, stacks, np.dtype(c.dtype).itemsize, backbone,
                                prompt_parameters(model.prompt, len(prompted), attention if deep else c.d_model),
                                optimizer_slots=0)
  length = _prompt_template(model.prompt).length if model.prompt is not None else 0
  check_step_memory(memory, _describe(batch_size, f"TASK_FEATURE_LENGTHS={dict(feature_lengths)}", length),
                    devices, model_parallel, available)
  return memory
