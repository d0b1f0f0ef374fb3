r"""The benchmark driver (issue 7): every configuration runs as the real command line in a subprocess.

  python scripts/bench.py quick       # < 20 min: speed table, a short SST-2 methods comparison, docs/RESULTS.md
  python scripts/bench.py methods     # 1. methods on SST-2 and RTE: held-out LR selection, then 3 seeds
  python scripts/bench.py sequence    # 2. NER (CoNLL-2003, WNUT-17) selected on dev, reported on test; SQuAD QA
  python scripts/bench.py ablations   # 3. SST-2: prompt length, prompt depth (top vs bottom), reparameterization
  python scripts/bench.py speed       # 4. step time, tokens/s, GFLOP/s vs a measured matmul peak, memory
  python scripts/bench.py recipe      # 5. SST-2 P-Tuning v2 recipe: position policy, pooling, dropout, schedule
  python scripts/bench.py compare     # 6. the full-budget comparison, each method x task one SWEEP (many hours)
  python scripts/bench.py all         # all four parts, then the report
  python scripts/bench.py plan [PART] # the configurations and the estimated wall time, nothing run
  python scripts/bench.py report      # regenerate docs/RESULTS.md from results/*.json

Each configuration is `python -m prompt_tuning_jax.train --gin_file=... --gin.KEY=VALUE ...` with MODEL_DIR
under runs/bench/<part>/<id>; the driver reads MODEL_DIR's results.json, parameters.json and metrics.jsonl
and appends one record (command, seed, hyperparameters, metrics, trainable share, export bytes, wall time,
training curve) to results/bench_<part>.json (quick: results/bench_quick_<part>.json) after every run.
A part is resumable: configurations recorded with the same command whose MODEL_DIR is still under runs/ are
skipped, so rerunning a part in the same checkout continues it (an interrupted run also resumes from its own
checkpoint), while a fresh clone runs every configuration again and replaces the records it came with.

Protocol. Hyperparameters (the learning rate, from a two-value grid per method) are chosen on a held-out
slice of the training set: runs train on `train[:-H]` and are scored on `train[-H:]` (tasks/splits.py;
H = 1000 SST-2 phrases, 250 RTE pairs). The chosen run (seed 0) is then evaluated once on the validation
split by rerunning its command with `train.eval_split='validation'` in its MODEL_DIR, which restores its
final checkpoint and only evaluates; seeds 1 and 2 train the chosen configuration on `train[:-H]` and
evaluate the validation split once, at the end (EVAL_PERIOD = TRAIN_STEPS). The validation split is
therefore read once per final configuration and seed. NER selects on dev and reports test the same way.
"""

import argparse
import dataclasses
import datetime
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

REPO = Path(__file__).resolve().parents[1]
PARTS = ("methods", "sequence", "ablations", "speed", "recipe")
# Parts run only when named (`all` leaves them out): `compare` takes days of 2-core CPU time.
LONG_PARTS = ("compare",)
SEEDS = (0, 1, 2)

# ---------------------------------------------------------------------------------------------------------------
# What runs.


@dataclasses.dataclass(frozen=True)
class Method:
  """A method as the command line builds it: a gin method file plus bindings, and its learning-rate grid."""
  key: str
  label: str
  gin: str
  bindings: Tuple[Tuple[str, object], ...] = ()
  lr_grid: Tuple[float, ...] = ()


# Prefix Tuning (Li & Liang) and P-Tuning v2 with reparameterization are the same model here: deep key/value
# prefixes at every layer produced by THUDM's prefix MLP (Embedding(P, 384) -> 512 -> tanh -> 2*L*384),
# gin/methods/prefix_tuning.gin. One set of runs serves both rows (the report says so).
METHODS = {m.key: m for m in (
    Method("finetune", "Fine-tuning", "finetune", (), (2e-5, 5e-5)),
    Method("bitfit", "BitFit", "bitfit", (), (1e-3, 5e-3)),
    Method("lester_p20", "Prompt Tuning P=20", "lester", (("PROMPT_LENGTH", 20),), (3e-2, 1e-1)),
    Method("lester_p100", "Prompt Tuning P=100", "lester", (("PROMPT_LENGTH", 100),), (3e-2, 1e-1)),
    # Trial runs (SST-2, 100 steps, held-out accuracy): P-Tuning 3e-3 74.8%; the prefix MLP 1e-3 81.1%, 3e-3
    # 57.0%, 1e-2 (prefix_tuning.gin's default until it set 1e-3) stays at the majority class. Grids sit around those.
    Method("ptuning_lstm", "P-Tuning (LSTM)", "ptuning", (), (1e-3, 3e-3)),
    Method("prefix_mlp", "Prefix Tuning (MLP) = P-Tuning v2 P=20 + reparam.", "prefix_tuning",
           (("PROMPT_LENGTH", 20),), (3e-4, 1e-3)),
    Method("deep_p20", "P-Tuning v2 P=20", "deep_prompt", (("PROMPT_LENGTH", 20),), (3e-3, 1e-2)),
    Method("deep_p100", "P-Tuning v2 P=100", "deep_prompt", (("PROMPT_LENGTH", 100),), (3e-3, 1e-2)),
)}
CLASSIFICATION_METHODS = ("finetune", "bitfit", "lester_p20", "lester_p100", "ptuning_lstm", "prefix_mlp",
                          "deep_p20")
# Sequence labelling and QA: P around 100 (P-Tuning v2's finding for hard sequence tasks). Fine-tuning's grid
# is higher than for classification: token heads start from scratch and NER needs more updates.
SEQUENCE_METHODS = ("finetune", "lester_p100", "deep_p100")
SEQUENCE_LR_GRID = {"finetune": (3e-5, 1e-4), "lester_p100": (3e-2, 1e-1), "deep_p100": (3e-3, 1e-2)}
# QA: fixed learning rates (no dev set apart from the evaluation half). Prompt Tuning is left out: at P=100 its
# 484-token sequences would add about 50 minutes and the part would not fit in 3 hours.
QA_METHODS = ("finetune", "deep_p100")
QA_LR = {"finetune": 1e-4, "deep_p100": 1e-2}
QA_BATCH_SIZE = 16  # 384-token windows


@dataclasses.dataclass(frozen=True)
class Task:
  """A task as the benchmark runs it: its gin file, data, held-out slice and step counts."""
  name: str
  gin: str
  held_out: int = 0  # H: rows of the training split held out for selection (its last H rows)
  data_dir: Optional[str] = None  # None: the data shipped in tasks/data
  data_note: str = ""

  @property
  def fit_split(self) -> str:
    return f"train[:-{self.held_out}]" if self.held_out else "train"

  @property
  def held_out_split(self) -> str:
    return f"train[-{self.held_out}:]"


SHARED_DATA = "../shared/data"  # relative to the repository, as the test suite and README use it
TASKS = {t.name: t for t in (
    Task("sst2", "gin/sst2.gin", 1000, None,
         "SST-2, the 10,000-phrase training subsample shipped in tasks/data (seed 0 of the 67,349); "
         "train[:-1000] trains, train[-1000:] selects, the 872 validation sentences report"),
    Task("rte", "gin/rte.gin", 250, None,
         "RTE as shipped in tasks/data (2,490 train / 277 validation); train[:-250] trains, train[-250:] selects"),
    Task("conll2003", "gin/conll2003.gin", 0, SHARED_DATA,
         "CoNLL-2003 English (14,041 train / 3,250 dev / 3,453 test sentences), ../shared/data"),
    Task("wnut17", "gin/wnut17.gin", 0, SHARED_DATA,
         "WNUT-17 (3,394 train / 1,009 dev / 1,287 test sentences), ../shared/data"),
    Task("squad_v1_dev_split", "gin/squad_v1_dev_split.gin", 0, SHARED_DATA,
         "SQuAD 1.1 dev split by article: articles 0-23 train, 24-47 evaluate (the only SQuAD data here; "
         "not comparable with official dev scores)"),
)}


@dataclasses.dataclass(frozen=True)
class Config:
  """One command line run. `id` names it in the results file and its MODEL_DIR (runs/bench/<part>/<id>)."""
  id: str
  part: str
  stage: str  # 'select', 'final', 'ablation', 'single'
  task: str
  method: str
  seed: int
  steps: int
  train_split: str
  eval_split: str
  eval_period: int
  bindings: Tuple[Tuple[str, object], ...] = ()  # hyperparameters beyond the method's own
  meta: Tuple[Tuple[str, object], ...] = ()  # what an ablation varies, for the report
  members: int = 1  # > 1: a SWEEP (in bindings) of this many members trained in one command

  @property
  def model_dir(self) -> str:
    return f"runs/bench/{self.part}/{self.id}"

  def hyperparameters(self) -> Dict[str, object]:
    return {**dict(METHODS[self.method].bindings), **dict(self.bindings)}

  def argv(self, model_dir: Optional[str] = None, eval_split: Optional[str] = None) -> List[str]:
    """The command's arguments after `python`; `model_dir`/`eval_split` override (evaluate another split in
    a finished run's MODEL_DIR)."""
    task, method = TASKS[self.task], METHODS[self.method]
    bindings = {"MODEL_DIR": model_dir or self.model_dir, "TRAIN_STEPS": self.steps,
                "EVAL_PERIOD": self.eval_period, "RANDOM_SEED": self.seed, **self.hyperparameters()}
    if task.data_dir:
      bindings["DATA_DIR"] = task.data_dir
    if self.train_split != "train":
      bindings["train.train_split"] = self.train_split
    if (eval_split or self.eval_split) != "validation":
      bindings["train.eval_split"] = eval_split or self.eval_split
    return (["-m", "prompt_tuning_jax.train", f"--gin_file={task.gin}", f"--gin_file=gin/methods/{method.gin}.gin"]
            + [f"--gin.{k}={gin_value(v)}" for k, v in bindings.items()])


def gin_value(value) -> str:
  """A Python value as a gin literal (strings keep their quotes)."""
  return repr(value) if not isinstance(value, float) else f"{value:g}"


def shell_command(argv: Sequence[str]) -> str:
  """`python ...` as one would type it: gin strings as --gin.KEY="'value'" (README style)."""
  def quote(arg: str) -> str:
    key, sep, value = arg.partition("=")
    if sep and "'" in value and not re.search(r"[\"$`\\!]", value):
      return f'{key}="{value}"'
    return shlex.quote(arg)
  return " ".join(["python", *map(quote, argv)])


# ---------------------------------------------------------------------------------------------------------------
# Estimates. Training steps/s on an idle 2-core CPU at batch 32 (QA: 16), per task and method. Measured as
# in-process step times of scripts/bench_speed.py (min of 6 steps after warm-up) at each task's mean padded
# length (SST-2 20 tokens, RTE 77, NER 28 and 39 interpolated between 20 and 40, QA 384), while other jobs
# held about half the CPU (the matmul samples of those runs: ~135 of ~300 GFLOP/s idle), then scaled by 1.7,
# the factor that maps P-Tuning v2 P=20's SST-2 step (448 ms) to its known idle command-line rate (3.8
# steps/s, which includes the host-side batching). The measurements are in results/calibration/.
CALIBRATION_SCALE = 1.7
STEPS_PER_SECOND = {
    ("sst2", "deep_p20"): 3.8, ("sst2", "prefix_mlp"): 3.64, ("sst2", "lester_p20"): 2.14,
    ("sst2", "lester_p100"): 0.53, ("sst2", "ptuning_lstm"): 3.48, ("sst2", "bitfit"): 4.59, ("sst2", "finetune"): 2.73,
    ("sst2", "deep_p1"): 4.59, ("sst2", "deep_p5"): 4.51, ("sst2", "deep_p10"): 4.18, ("sst2", "deep_p50"): 2.68,
    ("sst2", "deep_p100"): 1.76,
    ("rte", "deep_p20"): 0.94, ("rte", "prefix_mlp"): 0.91, ("rte", "lester_p20"): 0.73, ("rte", "lester_p100"): 0.28,
    ("rte", "ptuning_lstm"): 0.93, ("rte", "bitfit"): 0.93, ("rte", "finetune"): 0.60,
    ("conll2003", "deep_p100"): 1.43, ("conll2003", "lester_p100"): 0.465, ("conll2003", "finetune"): 1.95,
    ("wnut17", "deep_p100"): 1.12, ("wnut17", "lester_p100"): 0.40, ("wnut17", "finetune"): 1.38,
    ("squad_v1_dev_split", "deep_p100"): 0.149, ("squad_v1_dev_split", "lester_p100"): 0.091,
    ("squad_v1_dev_split", "finetune"): 0.256,
}
# Per command: process start, tokenization, first compiles (a persistent XLA cache makes repeats cheaper).
RUN_OVERHEAD_SECONDS = {"sst2": 35, "rte": 35, "conll2003": 60, "wnut17": 40, "squad_v1_dev_split": 150}
# One evaluation of a split, seconds (forward passes and metrics; SQuAD: 4,913 384-token windows).
EVAL_SECONDS = {("sst2", "validation"): 6, ("sst2", "held_out"): 4, ("rte", "validation"): 5,
                ("rte", "held_out"): 5, ("conll2003", "validation"): 25, ("conll2003", "test"): 25,
                ("wnut17", "validation"): 10, ("wnut17", "test"): 13, ("squad_v1_dev_split", "validation"): 800}
CHECKPOINT_SECONDS = {"finetune": 10}  # per evaluation: fine-tuning checkpoints and exports all 22.7M parameters
SPEED_SECONDS = {"quick": 150, "full": 540}  # full: + about 60 s of T5 decoding


def rate_key(config: Config) -> Tuple[str, str]:
  """Ablations vary P-Tuning v2's prompt length: rates are kept per length (fewer layers: the P=20 rate)."""
  length = config.hyperparameters().get("PROMPT_LENGTH")
  if config.method == "deep_p20" and length != 20:
    return config.task, f"deep_p{length}"
  return config.task, config.method


def estimate_seconds(config: Config, evaluate_only: bool = False) -> float:
  """Estimated wall time of one configuration on an idle 2-core machine."""
  split = lambda s: "held_out" if s.startswith("train[") else s
  evals = EVAL_SECONDS.get((config.task, split(config.eval_split)), 10)
  if evaluate_only:  # The same start-up (the training split is loaded too), no training, one evaluation.
    return RUN_OVERHEAD_SECONDS[config.task] + config.members * evals
  n_evals = -(-config.steps // config.eval_period)
  # No measured rate (NER BitFit and prefix MLP): P-Tuning v2 P=20's, else fine-tuning's (a full backward pass).
  rate = (STEPS_PER_SECOND.get(rate_key(config)) or STEPS_PER_SECOND.get((config.task, "deep_p20"))
          or STEPS_PER_SECOND[(config.task, "finetune")])
  # A sweep's members share one process and compile; each costs its own training and evaluation compute.
  return (RUN_OVERHEAD_SECONDS[config.task] + config.members * config.steps / rate
          + n_evals * config.members * (evals + CHECKPOINT_SECONDS.get(config.method, 0)))


# ---------------------------------------------------------------------------------------------------------------
# Running and recording.


def load_records(path: Optional[Path]) -> Dict[str, dict]:
  if path is None or not path.exists():
    return {}
  return {r["id"]: r for r in json.loads(path.read_text())["runs"]}


def save_records(path: Path, part: str, records: Dict[str, dict]) -> None:
  """Writes atomically (a temporary file renamed), so an interrupted driver never leaves half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_suffix(".json.tmp")
  tmp.write_text(json.dumps({"part": part, "runs": list(records.values())}, indent=1) + "\n")
  tmp.replace(path)


def read_jsonl(path: Path) -> List[dict]:
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def environment() -> dict:
  """Where the numbers were measured (recorded with every run)."""
  return {"host_cpus": os.cpu_count(), "loadavg_1min": round(os.getloadavg()[0], 2),
          "python": sys.version.split()[0], "platform": sys.platform}


@dataclasses.dataclass
class Planned:
  """A command of a part: what `plan` prints and the estimate sums."""
  id: str
  argv: List[str]
  seconds: float
  recorded: bool


class Bench:
  """Runs configurations of one part and records them; `plan_only` estimates instead of running."""

  def __init__(self, part: str, results_path: Optional[Path], plan_only: bool = False, keep_checkpoints: bool = False,
               ignore_recorded: bool = False):
    self.part, self.path, self.plan_only, self.keep_checkpoints = part, results_path, plan_only, keep_checkpoints
    self.records = {} if ignore_recorded else load_records(results_path)
    self.planned: List[Planned] = []
    self.failures: List[str] = []

  # -- bookkeeping
  def done(self, config_id: str, command: str) -> Optional[dict]:
    """The record of `config_id` if it holds `command` and ran in this checkout (its MODEL_DIR, under the
    git-ignored runs/, is still there): a part continued in the same checkout skips what it finished, a
    fresh clone runs everything again and replaces the records it ships with."""
    record = self.records.get(config_id)
    if record is None or record["command"] != command:
      return None
    return record if (REPO / record["model_dir"] / "bench_command.txt").exists() else None

  def _store(self, record: dict) -> dict:
    self.records[record["id"]] = record
    save_records(self.path, self.part, self.records)
    return record

  # -- running
  def run(self, config: Config, keep_checkpoint: bool = False) -> Optional[dict]:
    """Runs `config` unless it is recorded; returns its record (None when planning or when it failed)."""
    argv = config.argv()
    command = shell_command(argv)
    record = self.done(config.id, command)
    self.planned.append(Planned(config.id, argv, estimate_seconds(config), record is not None))
    if record is not None or self.plan_only:
      return record
    model_dir = REPO / config.model_dir
    marker = model_dir / "bench_command.txt"
    if model_dir.exists() and not (marker.exists() and marker.read_text() == command):
      shutil.rmtree(model_dir)  # Left by another command: start clean.
    resumed = (model_dir / "checkpoints").exists() and not (model_dir / "results.json").exists()
    model_dir.mkdir(parents=True, exist_ok=True)
    if not (model_dir / "results.json").exists():
      marker.write_text(command)
      if not self._execute(argv, config.id, model_dir, config.eval_split):
        return None
      wall = self._last_wall
    else:
      wall = None  # Finished before an interruption of the driver: record what it wrote.
    record = self._record(config, command, model_dir, wall, resumed=resumed)
    if not (keep_checkpoint or self.keep_checkpoints):
      shutil.rmtree(model_dir / "checkpoints", ignore_errors=True)
    return self._store(record)

  def evaluate(self, trained: Config, trained_record: dict, eval_split: str, config_id: str,
               stage: str = "final") -> Optional[dict]:
    """Evaluates the final checkpoint of a recorded run on `eval_split`: its command with
    train.eval_split=eval_split in its MODEL_DIR, which restores the checkpoint at TRAIN_STEPS and only
    evaluates. Without that checkpoint (pruned), the same command trains afresh in its own MODEL_DIR."""
    final = dataclasses.replace(trained, id=config_id, stage=stage, eval_split=eval_split,
                                eval_period=trained.steps)
    checkpoint = REPO / trained.model_dir / "checkpoints" / str(trained.steps)
    argv = final.argv(model_dir=trained.model_dir)
    command = shell_command(argv)
    record = self.done(config_id, command) or self.done(config_id, shell_command(final.argv()))
    if record is not None and "evaluated_from" in record and (
        trained_record is None or record["evaluated_from"].get("finished") != trained_record["finished"]):
      record = None  # It evaluated an earlier run of `trained`, which has run again since.
    self.planned.append(Planned(config_id, argv, estimate_seconds(final, evaluate_only=True), record is not None))
    if record is not None or self.plan_only:
      return record
    if not checkpoint.exists():
      print(f"[bench] {trained.id}: no checkpoint at step {trained.steps}; training {config_id} afresh", flush=True)
      return self.run(final)
    if not self._execute(argv, config_id, REPO / trained.model_dir, eval_split):
      return None
    record = self._record(final, command, REPO / trained.model_dir, self._last_wall, evaluated_from=trained_record)
    return self._store(record)

  def prune(self, configs: Sequence[Config]) -> None:
    """Deletes the checkpoints the selection kept (exports, logs and results stay)."""
    if not (self.plan_only or self.keep_checkpoints):
      for c in configs:
        shutil.rmtree(REPO / c.model_dir / "checkpoints", ignore_errors=True)

  def _execute(self, argv: List[str], config_id: str, model_dir: Path, eval_split: str) -> bool:
    print(f"[bench] {self.part}: {config_id}\n  {shell_command(argv)}", flush=True)
    log = model_dir / "bench.log"
    started = time.perf_counter()
    with open(log, "a", encoding="utf-8") as out:
      proc = subprocess.run([sys.executable, *argv], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                            env=bench_env(), check=False)
    self._last_wall = time.perf_counter() - started
    if proc.returncode != 0:
      tail = log.read_text(errors="replace").splitlines()[-8:]
      print(f"[bench] FAILED ({proc.returncode}) {config_id}; log {log}:\n  " + "\n  ".join(tail), flush=True)
      self.failures.append(config_id)
      return False
    results = json.loads((model_dir / "results.json").read_text())
    key = results["selection_metric"]
    print(f"[bench]   {eval_split} {key} {results[f'{eval_split}_{key}']:.2f} in {self._last_wall:.0f}s", flush=True)
    return True

  def _record(self, config: Config, command: str, model_dir: Path, wall: Optional[float], resumed: bool = False,
              evaluated_from: Optional[dict] = None) -> dict:
    results = json.loads((model_dir / "results.json").read_text())
    parameters = json.loads((model_dir / "parameters.json").read_text())
    logs = read_jsonl(model_dir / "metrics.jsonl")
    # The learning rate in effect, also when it is the method file's own (not bound on the command line).
    lr = re.search(r"^LEARNING_RATE = (.+)$", (model_dir / "config.gin").read_text(), re.M)
    key = results["selection_metric"]
    train_logs = [r for r in logs if r["split"] == "train"]
    rates = [r["steps_per_second"] for r in train_logs[1:]] or [r["steps_per_second"] for r in train_logs]
    tokens = [r["tokens_per_second"] for r in train_logs[1:]] or [r["tokens_per_second"] for r in train_logs]
    record = {
        "id": config.id, "part": self.part, "stage": config.stage, "task": config.task, "method": config.method,
        "label": METHODS[config.method].label, "seed": config.seed, "steps": config.steps,
        "hyperparameters": config.hyperparameters(), "learning_rate": float(lr.group(1)) if lr else None,
        "train_split": config.train_split,
        "eval_split": config.eval_split, "data": TASKS[config.task].data_note, "meta": dict(config.meta),
        "command": command, "model_dir": config.model_dir if evaluated_from is None else evaluated_from["model_dir"],
        "metric": key, "value": results[f"{config.eval_split}_{key}"],
        "eval_metrics": results[f"{config.eval_split}_metrics"],
        "majority_class_accuracy": results.get("majority_class_accuracy"),
        "trainable": parameters["trainable"], "backbone": parameters["backbone"],
        "share_of_backbone_percent": parameters["share_of_backbone_percent"],
        "export_bytes": results.get("export_bytes"), "export_tensor_bytes": parameters.get("export_tensor_bytes"),
        "wall_seconds": wall if wall is not None else results["wall_seconds"],
        "steps_per_second": statistics.median(rates) if rates else None,
        "tokens_per_second": statistics.median(tokens) if tokens else None,
        "curve": {"train_loss": [[r["step"], round(r["loss"], 5)] for r in train_logs],
                  "eval": [[r["step"], r[key]] for r in logs if r["split"] == config.eval_split and key in r]},
        "resumed": resumed, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "environment": environment(),
    }
    if "sweep" in results:  # A SWEEP: every member's settings and metrics (training/sweep.py's table).
      record["sweep"] = results["sweep"]
    if evaluated_from is not None:
      # The model is the recorded run's; its training numbers are that run's.
      record.update({k: evaluated_from[k] for k in ("steps_per_second", "tokens_per_second", "curve")})
      record["evaluation_wall_seconds"], record["wall_seconds"] = record["wall_seconds"], evaluated_from["wall_seconds"]
      record["evaluated_from"] = {k: evaluated_from[k] for k in ("id", "command", "finished")}
      record["note"] = (f"evaluates the step-{config.steps} checkpoint that `{evaluated_from['id']}` left in its "
                        "MODEL_DIR; run alone in an empty MODEL_DIR the same command trains that model first")
    return record

  def summary(self) -> Tuple[int, int, float]:
    """(configurations, still to run, estimated seconds of those)."""
    todo = [p.seconds for p in self.planned if not p.recorded]
    return len(self.planned), len(todo), sum(todo)


def bench_env() -> Dict[str, str]:
  """The subprocess environment: quiet TensorFlow and a persistent XLA compilation cache shared by the runs
  (a seed repeats its selection run's programs, and every run of a method its evaluation programs; the cache
  changes no number, only start-up time)."""
  env = dict(os.environ)
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  env.setdefault("JAX_COMPILATION_CACHE_DIR", str(REPO / "runs" / "bench" / "xla_cache"))
  return env


# ---------------------------------------------------------------------------------------------------------------
# The parts.


def config_id(task: str, method: str, stage: str, lr: float, seed: int, extra: str = "") -> str:
  return f"{task}.{method}{extra}.{stage}.lr{lr:g}.s{seed}"


def select_and_report(b: Bench, task: Task, method: Method, steps: int, seeds: Sequence[int],
                      select_eval_split: str, report_split: str, train_split: str, select_evals: int,
                      grid: Optional[Sequence[float]] = None) -> Optional[float]:
  """The learning rate of `grid` whose seed-0 run scores best on `select_eval_split` (the last evaluation;
  ties go to the first), then that run evaluated on `report_split` and more seeds trained and evaluated
  on it once. Returns the chosen learning rate."""
  grid = tuple(grid or method.lr_grid)
  selects = [Config(config_id(task.name, method.key, "select", lr, 0), b.part, "select", task.name, method.key, 0,
                    steps, train_split, select_eval_split, max(steps // select_evals, 1),
                    (("LEARNING_RATE", lr),)) for lr in grid]
  records = [b.run(c, keep_checkpoint=True) for c in selects]
  if any(r is None for r in records):
    if not b.plan_only:
      print(f"[bench] {task.name} {method.key}: a selection run failed; no final runs", flush=True)
      return None
    chosen = 0  # Planning before the selection ran: any grid value costs the same.
  else:
    chosen = max(range(len(grid)), key=lambda i: (records[i]["value"], -i))
  lr = grid[chosen]
  for seed in seeds:
    final_id = config_id(task.name, method.key, "final", lr, seed)
    if seed == 0:
      b.evaluate(selects[chosen], records[chosen], report_split, final_id)
    else:
      b.run(Config(final_id, b.part, "final", task.name, method.key, seed, steps, train_split, report_split, steps,
                   (("LEARNING_RATE", lr),)))
  b.prune(selects)
  return lr


def part_methods(b: Bench, steps: Dict[str, int], seeds: Sequence[int] = SEEDS) -> None:
  """1. Every method on SST-2 and RTE: LR chosen on the held-out slice, then `seeds` on validation."""
  for task_name in ("sst2", "rte"):
    task = TASKS[task_name]
    for key in CLASSIFICATION_METHODS:
      select_and_report(b, task, METHODS[key], steps[task_name], seeds, task.held_out_split, "validation",
                        task.fit_split, select_evals=2)


def part_sequence(b: Bench, ner_steps: Dict[str, int], qa_steps: int) -> None:
  """2. NER: LR selected on dev (one seed), the chosen run reported on test. QA on the SQuAD dev split:
  one run per method at a fixed learning rate (no separate dev set to select on), evaluated once."""
  for task_name, steps in ner_steps.items():
    for key in SEQUENCE_METHODS:
      select_and_report(b, TASKS[task_name], METHODS[key], steps, (0,), "validation", "test", "train",
                        select_evals=1, grid=SEQUENCE_LR_GRID[key])
  for key in QA_METHODS:
    b.run(Config(config_id("squad_v1_dev_split", key, "single", QA_LR[key], 0), b.part, "single",
                 "squad_v1_dev_split", key, 0, qa_steps, "train", "validation", qa_steps,
                 (("LEARNING_RATE", QA_LR[key]), ("BATCH_SIZE", QA_BATCH_SIZE))))


# One learning rate per arm: deep_prompt.gin's 1e-2 (from runs/train.gin) for the prefix table, 1e-3 for the MLP,
# which does not train at 1e-2 (trial runs above).
ABLATION_LR = {"deep_p20": 1e-2, "prefix_mlp": 1e-3}
PROMPT_LENGTHS = (1, 5, 10, 20, 50, 100)
NUM_LAYERS = 6  # all-MiniLM-L6-v2


def ablation_configs(steps: int, seeds: Sequence[int]) -> List[Config]:
  """3. SST-2 P-Tuning v2: prompt length; k layers with prompts, top vs bottom; MLP reparameterization.
  Shared points (P=20 on all layers without MLP) are one configuration."""
  task = TASKS["sst2"]
  out = {}

  def add(axis: str, value, method: str, extra: str, bindings: dict):
    for seed in seeds:
      cid = config_id("sst2", method, "ablation", ABLATION_LR[method], seed, extra)
      config = out.get(cid) or Config(cid, "ablations", "ablation", "sst2", method, seed, steps, task.fit_split,
                                      "validation", steps,
                                      (("LEARNING_RATE", ABLATION_LR[method]), *bindings.items()))
      out[cid] = dataclasses.replace(config, meta=tuple(sorted({**dict(config.meta), axis: value}.items(),
                                                               key=lambda kv: kv[0])))

  for p in PROMPT_LENGTHS:
    add("prompt_length", p, "deep_p20", "" if p == 20 else f"_p{p}", {"PROMPT_LENGTH": p})
  for k in range(1, NUM_LAYERS + 1):
    for side in ("top", "bottom"):
      layers = None if k == NUM_LAYERS else f"{side} {k}"
      extra = "" if layers is None else f"_{side}{k}"
      add(f"depth_{side}", k, "deep_p20", extra, {"PROMPT_LENGTH": 20, **({"PROMPT_LAYERS": layers} if layers else {})})
  add("reparameterization", False, "deep_p20", "", {"PROMPT_LENGTH": 20})
  add("reparameterization", True, "prefix_mlp", "", {"PROMPT_LENGTH": 20})
  return list(out.values())


def part_ablations(b: Bench, steps: int, seeds: Sequence[int]) -> None:
  for config in ablation_configs(steps, seeds):
    b.run(config)


def part_speed(b: Bench, args: List[str], out: Path) -> None:
  """4. scripts/bench_speed.py in its own process; skipped when `out` holds its command's results from this
  checkout (the marker under runs/ says so, as for the training runs)."""
  argv = ["scripts/bench_speed.py", f"--out={os.path.relpath(out, REPO)}", *args]
  command = shell_command(argv)
  marker = REPO / "runs" / "bench" / b.part / f"{out.stem}_command.txt"
  recorded = (out.exists() and json.loads(out.read_text()).get("command") == command and marker.exists()
              and marker.read_text() == command)
  b.planned.append(Planned("speed", argv, SPEED_SECONDS["quick" if "--quick" in args else "full"], recorded))
  if b.plan_only or recorded:
    return
  print(f"[bench] speed\n  {command}", flush=True)
  proc = subprocess.run([sys.executable, *argv], cwd=REPO, env=bench_env(), check=False)
  if proc.returncode != 0:
    b.failures.append("speed")
  else:
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(command)


@dataclasses.dataclass(frozen=True)
class RecipeArm:
  """One P-Tuning v2 recipe: the settings where ours and peft's PrefixTuning (THUDM's code) can differ."""
  key: str
  position_policy: str  # real tokens' position ids from 0 ('from_zero') or from P ('after_prompt', peft)
  pooling: str  # 'cls' ([CLS] state) or 'pooler' (tanh dense over it, peft's BertForSequenceClassification)
  prefix_dropout: float = 0.1  # peft: none
  constant_lr: bool = False  # peft run: constant; ours: linear decay to 0

  def bindings(self) -> Tuple[Tuple[str, object], ...]:
    out = [("PROMPT_LENGTH", 20), ("LEARNING_RATE", RECIPE_LR), ("PROMPT_POSITION_POLICY", self.position_policy),
           ("POOLING", self.pooling)]
    if self.prefix_dropout != 0.1:
      out.append(("DeepPrompt.dropout_rate", self.prefix_dropout))
    if self.constant_lr:
      out.append(("adamw.end_value", RECIPE_LR))  # linear from lr to lr: constant
    return tuple(out)

  def meta(self) -> Tuple[Tuple[str, object], ...]:
    return (("arm", self.key), ("position_policy", self.position_policy), ("pooling", self.pooling),
            ("prefix_dropout", self.prefix_dropout), ("schedule", "constant" if self.constant_lr else "linear"))


# The comparison: peft's PrefixTuning P=20 at 626 steps (2 epochs of the 10k subsample), batch 32,
# max length 64, constant lr 1e-2, no prefix dropout, text positions from P, pooler. The two arms every seed
# runs first, then single factors.
RECIPE_LR = 1e-2
RECIPE_STEPS = 626
RECIPE_ARMS = (
    RecipeArm("from_zero_cls", "from_zero", "cls"),
    RecipeArm("after_prompt_pooler", "after_prompt", "pooler"),
    RecipeArm("peft", "after_prompt", "pooler", prefix_dropout=0.0, constant_lr=True),
    RecipeArm("from_zero_pooler", "from_zero", "pooler"),
    RecipeArm("after_prompt_cls", "after_prompt", "cls"),
)


def part_recipe(b: Bench, steps: int, seeds: Sequence[int], factor_seeds: Sequence[int],
                arms: Sequence[RecipeArm] = RECIPE_ARMS) -> None:
  """5. Each arm trains on train[:-1000], is scored on the held-out train[-1000:] after each epoch (the
  evidence the default is chosen on), and its final checkpoint is evaluated once on validation. The first
  two arms (the candidate defaults) run `seeds` before the single-factor arms run `factor_seeds`, so an
  interrupted part still compares the candidates."""
  task = TASKS["sst2"]
  order = [(a, s) for s in seeds for a in arms[:2]] + [(a, s) for s in factor_seeds for a in arms[2:]]
  for arm, seed in order:
    cid = config_id("sst2", "deep_p20", "recipe", RECIPE_LR, seed, f"_{arm.key}")
    config = Config(cid, b.part, "recipe", "sst2", "deep_p20", seed, steps, task.fit_split, task.held_out_split,
                    steps // 2, arm.bindings(), arm.meta())
    record = b.run(config, keep_checkpoint=True)
    if record is not None or b.plan_only:
      b.evaluate(config, record, "validation", cid.replace(".recipe.", ".recipe_final."), stage="final")
    b.prune([config])


QUICK_METHODS = ("deep_p20", "prefix_mlp", "lester_p20", "bitfit", "finetune")


def part_quick(b: Bench, steps: int) -> None:
  """A short SST-2 comparison: one seed, each method file's own learning rate (no selection), trained on
  train[:-1000] and evaluated on validation once."""
  task = TASKS["sst2"]
  for key in QUICK_METHODS:
    b.run(Config(f"sst2.{key}.quick.s0", "quick", "quick", "sst2", key, 0, steps, task.fit_split, "validation",
                 steps))


# Step counts of the full parts (each sized to stay under 3 hours on an idle 2-core CPU; `plan` prints the
# estimate) and of bench-quick.
METHOD_STEPS = {"sst2": 280, "rte": 60}  # RTE: 60 x 32 = 1,920 of the 2,240 training pairs (< 1 epoch)
NER_STEPS = {"conll2003": 450, "wnut17": 250}  # about 1 and 2.4 epochs
QA_STEPS = 100  # x 16 windows: 27% of the 5,871 training windows
ABLATION_STEPS = 500
ABLATION_SEEDS = SEEDS
QUICK_STEPS = 200
RECIPE_SEEDS = SEEDS
RECIPE_FACTOR_SEEDS = (0,)  # the single-factor arms: one seed each, to fit the part in about 2 hours


# 6. The full-budget comparison (issue 20, item 3): fine-tuning, BitFit, Prompt Tuning and P-Tuning v2 with and
# without the prefix MLP on SST-2 and CoNLL-2003 (RTE and WNUT-17 secondary). Each method x task is one SWEEP of
# its 5-value learning-rate grid x 3 seeds (15 members in one command over one frozen backbone; fine-tuning's
# members each train their own backbone copy). Selection: the learning rate with the best mean held-out metric
# over the seeds (SST-2, RTE: train[-H:]; NER: dev), read from the sweep's member table by the report; the
# same command then evaluates every member's final checkpoint once on the report split (validation; NER: test).
# A chosen value at a grid edge means the grid is widened here (one more value past that edge) and the part
# rerun: recorded sweeps of the old grid are kept, the new one runs. Budgets: about 10 epochs of each training
# split, evaluated 10 times, so the held-out curves show whether they have flattened (the report plots them).
COMPARE_TASKS = ("sst2", "conll2003", "rte", "wnut17")
COMPARE_METHODS = {"sst2": ("finetune", "bitfit", "lester_p20", "deep_p20", "prefix_mlp"),
                   "rte": ("finetune", "bitfit", "lester_p20", "deep_p20", "prefix_mlp"),
                   "conll2003": ("finetune", "bitfit", "lester_p100", "deep_p100", "prefix_mlp"),
                   "wnut17": ("finetune", "bitfit", "lester_p100", "deep_p100", "prefix_mlp")}
COMPARE_LR_GRID = {"finetune": (1e-5, 2e-5, 5e-5, 1e-4, 2e-4), "bitfit": (3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                   "lester_p20": (1e-2, 3e-2, 1e-1, 3e-1, 1.0), "lester_p100": (1e-2, 3e-2, 1e-1, 3e-1, 1.0),
                   "deep_p20": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "deep_p100": (1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                   "prefix_mlp": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)}
# ~10 epochs at batch 32: SST-2 9,000 phrases, RTE 2,240 pairs, CoNLL-2003 14,041 and WNUT-17 3,394 sentences.
COMPARE_STEPS = {"sst2": 2800, "rte": 700, "conll2003": 4400, "wnut17": 1060}
COMPARE_EVALS = 10


def compare_configs(steps: Dict[str, int] = COMPARE_STEPS, seeds: Sequence[int] = SEEDS) -> List[Config]:
  """One sweep per task x method: train on the fit split, evaluate on the selection split."""
  out = []
  for task_name in COMPARE_TASKS:
    task, n = TASKS[task_name], steps[task_name]
    select_split = task.held_out_split if task.held_out else "validation"
    for key in COMPARE_METHODS[task_name]:
      grid = COMPARE_LR_GRID[key]
      sweep = {"LEARNING_RATE": list(grid), "RANDOM_SEED": list(seeds)}
      out.append(Config(f"{task_name}.{key}.compare.lr{grid[0]:g}-{grid[-1]:g}", "compare", "sweep", task_name, key,
                        0, n, task.fit_split, select_split, max(n // COMPARE_EVALS, 1), (("SWEEP", sweep),),
                        members=len(grid) * len(seeds)))
  return out


def part_compare(b: Bench, steps: Dict[str, int] = COMPARE_STEPS) -> None:
  """6. Each sweep, then its members' final checkpoints evaluated once on the report split."""
  for config in compare_configs(steps):
    record = b.run(config, keep_checkpoint=True)
    report_split = "validation" if TASKS[config.task].held_out else "test"
    if record is not None or b.plan_only:
      b.evaluate(config, record, report_split, config.id + ".final")


def run_part(part: str, results_dir: Path, plan_only: bool, keep_checkpoints: bool = False,
             ignore_recorded: bool = False) -> Bench:
  name = "quick_methods" if part == "quick" else part
  # The speed part records nothing run by run: its one file is bench_speed.py's own output, not a list of runs.
  runs_path = None if part == "speed" else results_dir / f"bench_{name}.json"
  b = Bench(part, runs_path, plan_only, keep_checkpoints, ignore_recorded)
  if part == "methods":
    part_methods(b, METHOD_STEPS)
  elif part == "sequence":
    part_sequence(b, NER_STEPS, QA_STEPS)
  elif part == "ablations":
    part_ablations(b, ABLATION_STEPS, ABLATION_SEEDS)
  elif part == "speed":
    part_speed(b, [], results_dir / "bench_speed.json")
  elif part == "recipe":
    part_recipe(b, RECIPE_STEPS, RECIPE_SEEDS, RECIPE_FACTOR_SEEDS)
  elif part == "compare":
    part_compare(b)
  elif part == "quick":
    part_speed(b, ["--quick"], results_dir / "bench_quick_speed.json")
    part_quick(b, QUICK_STEPS)
  return b


def estimates(results_dir: Path = REPO / "results") -> Dict[str, Tuple[int, float]]:
  """{part: (configurations, estimated seconds on an idle machine)} for every part, from the plan."""
  out = {}
  for part in (*PARTS, "quick", *LONG_PARTS):
    b = run_part(part, results_dir, plan_only=True, ignore_recorded=True)
    out[part] = (len(b.planned), sum(p.seconds for p in b.planned))
  return out


def report(results_dir: Path) -> int:
  return subprocess.run([sys.executable, "scripts/make_results_md.py", f"--results_dir={results_dir}"], cwd=REPO,
                        check=False).returncode


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("part", choices=(*PARTS, *LONG_PARTS, "quick", "all", "plan", "report"))
  parser.add_argument("plan_part", nargs="?", default=None, help="with `plan`: one part (default: all)")
  parser.add_argument("--results_dir", default="results")
  parser.add_argument("--keep_checkpoints", action="store_true", help="keep every run's checkpoints")
  parser.add_argument("--no_report", action="store_true", help="do not regenerate docs/RESULTS.md")
  args = parser.parse_args(argv)
  results_dir = (REPO / args.results_dir).resolve()

  if args.part == "report":
    return report(results_dir)
  if args.part == "plan":
    for part in [args.plan_part] if args.plan_part else (*PARTS, "quick", *LONG_PARTS):
      b = run_part(part, results_dir, plan_only=True)
      n, todo, seconds = b.summary()
      total = sum(p.seconds for p in b.planned)
      print(f"{part:<10} {n:>3} configurations, {n - todo} recorded; estimated {total / 3600:.2f} h in all, "
            f"{seconds / 3600:.2f} h still to run (idle 2-core CPU)")
      if args.plan_part:
        for p in b.planned:
          print(f"  {'done' if p.recorded else '    '} {p.seconds / 60:6.1f} min  {p.id}")
    return 0

  failures = []
  for part in PARTS if args.part == "all" else (args.part,):
    started = time.perf_counter()
    b = run_part(part, results_dir, plan_only=False, keep_checkpoints=args.keep_checkpoints)
    print(f"[bench] {part}: {len(b.planned)} configurations in {time.perf_counter() - started:.0f}s"
          f"{'; failed: ' + ', '.join(b.failures) if b.failures else ''}", flush=True)
    failures += b.failures
  if not args.no_report:
    report(results_dir)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
