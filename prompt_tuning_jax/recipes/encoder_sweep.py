"""The encoder trainer's sweeps: `train` with SWEEP set (gin/runs/train.gin; training/sweep_settings.py).

Every member is built as the same command with its swept macros bound would build it alone (its optimizer,
its module, its seed's batch order), then training/sweep.py trains them together over one frozen backbone.
A sweep trains one task without an ensemble (ENSEMBLE_SIZE=1); its optimizer must be adamw or adafactor
(their learning rate is what varies inside one compiled step).
"""

import copy
import dataclasses
from typing import Any, Dict, List, Mapping

import gin

from prompt_tuning_jax import errors, tasks
from prompt_tuning_jax.data import vocabularies
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.encoder_model import EncoderBatcher, EncoderModel
from prompt_tuning_jax.recipes import encoder
from prompt_tuning_jax.training import fit, steps, sweep, sweep_settings


def _read_macros() -> List[str]:
  from prompt_tuning_jax import cli  # pylint: disable=g-import-not-at-top  (cli registers this module)
  return cli.referenced_macros()


def member_optimizer(a: Mapping[str, Any]):
  """The optimizer `train` would get with the bound macros: gin's train.optimizer evaluated anew (else the
  default AdamW); it must be described (adamw, adafactor) so its learning rate can vary per member."""
  try:
    bound = gin.query_parameter("train.optimizer")
  except ValueError:
    bound = None
  tx = copy.deepcopy(bound) if bound is not None else a["optimizer"] or steps.adamw(train_steps=a["train_steps"])
  described = steps.description(tx)
  if described is None or described.get("optimizer") not in ("adamw", "adafactor"):
    raise errors.ConfigError("SWEEP needs train.optimizer = @adamw() or @adafactor() (its learning rate varies "
                             "per member inside one compiled step); this configuration's optimizer is another.")
  return described


def check_sweep_run(a: Mapping[str, Any]) -> List[Dict[str, Any]]:
  """The members' settings once SWEEP and the run fit a sweep (before anything is built)."""
  sweep_settings.check_sweep(a["sweep"], a["sweep_mode"], _read_macros())
  if a["ensemble_size"] != 1:
    raise errors.ConfigError(f"SWEEP trains single members, but ENSEMBLE_SIZE={a['ensemble_size']}; set "
                             "--gin.ENSEMBLE_SIZE=1 (or drop SWEEP).")
  names = tasks.task_names(a["task_name"])
  if len(names) > 1 or a["eval_task_name"] is not None:
    raise errors.ConfigError(f"SWEEP trains and selects on one task, but MIXTURE_OR_TASK_NAME={a['task_name']!r} "
                             f"has {len(names)} (or train.eval_task_name is set); sweep one task at a time.")
  settings = sweep_settings.members(a["sweep"], a["sweep_mode"])
  print(f"SWEEP ({a['sweep_mode']}): {len(settings)} members", flush=True)
  return settings


def build_members(a: Mapping[str, Any], settings, run: fit.Run, config, batcher: EncoderBatcher,
                  infos, train_data: fit.TrainData) -> List[sweep.Member]:
  """Each member's module (checked against the backbone), optimizer, seed and batch order."""
  out = []
  for index, member_settings in enumerate(settings):
    with sweep_settings.bound_macros(member_settings):
      described = member_optimizer(a)
      module = encoder.checked_model(encoder.build_model(a["model_cls"], config, infos, a["multitask_prompt"], 1),
                                     config, run, a["batch_size"], batcher.max_length, a["trainable_patterns"])
    seed = int(member_settings.get("RANDOM_SEED", a["seed"]))
    out.append(sweep.Member(index, dict(member_settings), seed, EncoderModel(module, 1, batcher), described,
                            batcher.train_batches(train_data.train, a["batch_size"], seed)))
  return out


def train_sweep(a: Dict[str, Any]) -> dict:
  """`encoder.train` with SWEEP: its arguments (locals()) -> results.json's dict (training/sweep.results)."""
  settings = check_sweep_run(a)
  for member_settings in settings:  # Each member's optimizer settings are checked before the run starts.
    with sweep_settings.bound_macros(member_settings):
      member_optimizer(a)
  options = a["options"]
  run = fit.start(a["model_dir"], a["batch_size"], a["use_hardware_rng"])
  max_length = int(a["feature_lengths"]["inputs"])
  names = tasks.task_names(a["task_name"])
  infos = {name: tasks.info(name) for name in names}
  train_names, eval_names = encoder.split_tasks(names, a["train_split"], a["eval_split"], True)
  backbone_path = resolve_backbone_dir(a["backbone_dir"])
  vocabulary = vocabularies.wordpiece_vocabulary(backbone_path / "vocab.txt")
  config, backbone_params = load_backbone(backbone_path)
  config = dataclasses.replace(config, remat=a["remat"])
  batcher = EncoderBatcher(max_length, a["data_dir"], vocabulary)
  data = encoder.load_data(batcher, names, train_names, eval_names, a["train_split"], a["eval_split"],
                           a["batch_size"], a["seed"])
  encoder.describe_data(data, names, a["train_split"], a["eval_split"])
  members = build_members(a, settings, run, config, batcher, infos, data)
  metadata = encoder.run_metadata(a["task_name"], infos, 1, a["multitask_prompt"], backbone_path, max_length)
  return sweep.fit_sweep(run, members, backbone_params, data, options, metadata)
