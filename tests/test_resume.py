"""Exact resume after SIGKILL, same-seed determinism, and skipping non-finite updates (issue 6, items 3 and 5)."""

import json
import os
import random
import signal
import subprocess
import sys
import time
import types
from collections import defaultdict
from pathlib import Path

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from safetensors.numpy import load_file

from conftest import GOLDENS, REPO, write_tiny_data
from prompt_tuning_jax import train
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.training import loop
from prompt_tuning_jax.training.checkpoints import Checkpoints
from prompt_tuning_jax.training.metric_writer import MetricWriter
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.training.steps import TrainState, make_train_step, skip_nonfinite

TRAIN_STEPS, EVAL_PERIOD = 30, 5


def cli_flags(model_dir, data_dir, *more):
  """The small SST-2 deep-prompt run every CLI test here trains; a loss is logged at every step."""
  return ["--gin_file=gin/sst2_deep_prompt.gin", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
          f"--gin.TRAIN_STEPS={TRAIN_STEPS}", f"--gin.EVAL_PERIOD={EVAL_PERIOD}", "--gin.BATCH_SIZE=8",
          "--gin.PROMPT_LENGTH=4", "--gin.train.log_period=1", *more]


def cli(model_dir, data_dir, *more):
  return [sys.executable, "-m", "prompt_tuning_jax.train", *cli_flags(model_dir, data_dir, *more)]


def train_records(model_dir: Path) -> list:
  return [r for r in map(json.loads, (model_dir / "metrics.jsonl").read_text().splitlines()) if r["split"] == "train"]


def last_logged_step(metrics: Path) -> int:
  """The last train step in metrics.jsonl while it is being written (a line without its newline is not yet)."""
  lines = metrics.read_text().split("\n")[:-1]
  return max([json.loads(line)["step"] for line in lines if '"train"' in line], default=0)


def logged_losses(model_dir: Path) -> dict:
  """step -> every loss logged for it (a step trained before a kill and again after the resume has two)."""
  out = defaultdict(list)
  for record in train_records(model_dir):
    out[record["step"]].append(record["loss"])
  return dict(out)


def checkpoint_arrays(model_dir: Path, step: int) -> dict:
  """The checkpointed state (step, trainable parameters, optimizer state) as flat {path: numpy array}."""
  state = ocp.StandardCheckpointer().restore(model_dir / "checkpoints" / str(step) / "state")
  return {jax.tree_util.keystr(path): np.asarray(x) for path, x in jax.tree_util.tree_leaves_with_path(state)}


def checkpoint_steps(model_dir: Path) -> list:
  """Steps of the finished checkpoints (Orbax writes into a temporary name and renames when complete)."""
  directory = model_dir / "checkpoints"
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if directory.is_dir() else []


def assert_same_arrays(a: dict, b: dict) -> float:
  """Asserts bit-identical arrays under the same keys; returns the largest absolute difference (0.0)."""
  assert sorted(a) == sorted(b) and a
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  return max(float(np.max(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)), initial=0.0)) for k in a)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return write_tiny_data(tmp_path_factory.mktemp("resume") / "data")


@pytest.fixture(scope="module")
def uninterrupted(data_dir, tmp_path_factory):
  """MODEL_DIR of run A: TRAIN_STEPS steps through the command line, never interrupted."""
  model_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
  done = subprocess.run(cli(model_dir, data_dir), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stdout + done.stderr
  return model_dir


def test_killed_run_resumes_bit_identical(uninterrupted, data_dir, tmp_path):
  # The kill moment is random; RESUME_KILL_SEED replays a failure's.
  seed = int(os.environ.get("RESUME_KILL_SEED", random.SystemRandom().randrange(10 ** 6)))
  kill_after = random.Random(seed).randint(EVAL_PERIOD + 1, TRAIN_STEPS - 3)
  model_dir, why = tmp_path / "run", f"(RESUME_KILL_SEED={seed}: kill after step {kill_after})"
  with open(tmp_path / "killed.log", "w", encoding="utf-8") as log:
    first = subprocess.Popen(cli(model_dir, data_dir), cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    metrics = model_dir / "metrics.jsonl"
    while not (metrics.exists() and last_logged_step(metrics) >= kill_after and checkpoint_steps(model_dir)):
      assert first.poll() is None, (tmp_path / "killed.log").read_text()
      assert time.time() < deadline, f"not there within 240 s {why}"
      time.sleep(0.002)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
  assert first.returncode == -signal.SIGKILL
  killed_at, saved = max(logged_losses(model_dir)), checkpoint_steps(model_dir)
  print(f"\n{why}: killed after step {killed_at}, resuming from checkpoint {saved[-1]}")
  # Killed after a checkpoint and before the end: the resumed run has steps to replay and to add.
  assert EVAL_PERIOD <= saved[-1] <= killed_at < TRAIN_STEPS, (saved, killed_at, why)
  assert not (model_dir / "results.json").exists()

  resumed = subprocess.run(cli(model_dir, data_dir), cwd=REPO, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert (f"Restored checkpoint {model_dir.resolve() / 'checkpoints' / str(saved[-1])} (step {saved[-1]}); batches "
          f"resume at position {saved[-1]}.") in resumed.stdout, resumed.stdout
  assert f"step {saved[-1]:>6}/{TRAIN_STEPS}" not in resumed.stdout  # No step before the checkpoint is repeated...
  results = json.loads((model_dir / "results.json").read_text())
  assert results["step"] == TRAIN_STEPS  # ...and training ends at TRAIN_STEPS.
  assert f"TRAIN_STEPS = {TRAIN_STEPS}" in (model_dir / "config.gin").read_text()  # The operative config.
  assert (model_dir / "export" / "best.safetensors").stat().st_size == results["export_bytes"]

  # Every loss equals run A's at that step, and each step is logged once: the resume dropped the records of
  # the steps it replays (those after the checkpoint) from metrics.jsonl.
  expected, got = logged_losses(uninterrupted), logged_losses(model_dir)
  assert sorted(expected) == sorted(got) == list(range(1, TRAIN_STEPS + 1)), why
  assert got == expected, (got, why)
  # The final checkpoint (trainable parameters and optimizer state) and the best export are bit-identical.
  difference = assert_same_arrays(checkpoint_arrays(uninterrupted, TRAIN_STEPS), checkpoint_arrays(model_dir,
                                                                                                    TRAIN_STEPS))
  assert_same_arrays(load_file(uninterrupted / "export" / "best.safetensors"),
                     load_file(model_dir / "export" / "best.safetensors"))
  print(f"final state: max abs difference {difference} over {len(checkpoint_arrays(model_dir, TRAIN_STEPS))} arrays")


def read_lock(model_dir: Path) -> dict:
  try:
    return json.loads((model_dir / "run.lock").read_text())
  except (OSError, ValueError):
    return {}


def test_sigterm_checkpoints_the_step_and_a_second_run_on_the_model_dir_is_refused(uninterrupted, data_dir,
                                                                                  tmp_path, capsys):
  """One real run (a subprocess) serves both: while it holds MODEL_DIR a second run is refused naming it; SIGTERM
  mid-run checkpoints the step it finishes and exits 143; the rerun resumes there and ends bit-identical."""
  model_dir, log = tmp_path / "run", tmp_path / "first.log"
  with open(log, "w", encoding="utf-8") as out:
    first = subprocess.Popen(cli(model_dir, data_dir), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while read_lock(model_dir).get("pid") != first.pid:  # Taken in fit.start, before the data and the compile.
      assert first.poll() is None and time.time() < deadline, log.read_text()
      time.sleep(0.01)
    assert main_here(cli_flags(model_dir, data_dir)) == 2
    refused = capsys.readouterr().err.strip()
    assert refused.startswith(f"error: MODEL_DIR {model_dir} is in use by another run (host ") and (
        f" pid {first.pid} (since ") in refused and refused.count("\n") == 0, refused
    metrics = model_dir / "metrics.jsonl"
    while not (metrics.exists() and last_logged_step(metrics) >= 3):
      assert first.poll() is None and time.time() < deadline, log.read_text()
      time.sleep(0.002)
    signalled_after = last_logged_step(metrics)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=120)
  assert first.returncode == 128 + signal.SIGTERM, log.read_text()
  last_line = log.read_text().strip().splitlines()[-1]
  stopped_at = int(last_line.split(" after step ")[1].split()[0])
  assert last_line == (f"stopped by SIGTERM after step {stopped_at} of {TRAIN_STEPS}: saved checkpoint "
                       f"{model_dir.resolve() / 'checkpoints' / str(stopped_at)} (batches resume at position "
                       f"{stopped_at}); rerun the same command to resume.")
  assert "Traceback" not in log.read_text()
  # The step running when the signal came was finished and checkpointed; nothing after it ran.
  assert signalled_after <= stopped_at < TRAIN_STEPS and checkpoint_steps(model_dir)[-1] == stopped_at
  assert max(logged_losses(model_dir)) <= stopped_at and not (model_dir / "run.lock").exists()

  assert main_here(cli_flags(model_dir, data_dir)) == 0
  assert (f"Restored checkpoint {model_dir.resolve() / 'checkpoints' / str(stopped_at)} (step {stopped_at}); "
          f"batches resume at position {stopped_at}.") in capsys.readouterr().out
  assert logged_losses(model_dir) == logged_losses(uninterrupted)  # Each step once, with run A's loss.
  assert_same_arrays(checkpoint_arrays(uninterrupted, TRAIN_STEPS), checkpoint_arrays(model_dir, TRAIN_STEPS))
  assert_same_arrays(load_file(uninterrupted / "export" / "best.safetensors"),
                     load_file(model_dir / "export" / "best.safetensors"))


def main_here(args) -> int:
  """train.main(args) in this process with a fresh gin config, cleared again afterwards."""
  gin.clear_config()
  try:
    return train.main(args)
  finally:
    gin.clear_config()


def test_same_seed_gives_identical_losses_and_another_seed_does_not(uninterrupted, data_dir, tmp_path):
  """Run A (a subprocess) against the same run in this process; then another seed, with non-finite skipping on."""
  assert main_here(cli_flags(tmp_path / "same", data_dir)) == 0
  same = logged_losses(tmp_path / "same")
  assert same == logged_losses(uninterrupted) and len(same) == TRAIN_STEPS
  assert_same_arrays(checkpoint_arrays(uninterrupted, TRAIN_STEPS), checkpoint_arrays(tmp_path / "same", TRAIN_STEPS))

  assert main_here(cli_flags(tmp_path / "other", data_dir, "--gin.RANDOM_SEED=1", "--gin.TRAIN_STEPS=3",
                             "--gin.train.skip_nonfinite_updates=True")) == 0
  other = train_records(tmp_path / "other")
  assert [r["loss"] for r in other] != [same[s][0] for s in (1, 2, 3)]
  assert [r["skipped_updates"] for r in other] == [0, 0, 0]  # The option reaches the loop; nothing to skip.



def test_use_hardware_rng_is_reproducible_on_one_mesh_and_draws_another_stream(uninterrupted, data_dir, tmp_path):
  """USE_HARDWARE_RNG=True (t5x's switch to 'unsafe_rbg'): two runs agree exactly, their dropout differs from the
  default threefry run's, and the next run without it is back on threefry."""
  flags = lambda name, *more: cli_flags(tmp_path / name, data_dir, "--gin.TRAIN_STEPS=3", *more)
  try:
    for name in ("rbg_a", "rbg_b"):
      assert main_here(flags(name, "--gin.USE_HARDWARE_RNG=True")) == 0
      assert jax.config.jax_default_prng_impl == "unsafe_rbg"
    rbg = logged_losses(tmp_path / "rbg_a")
    assert rbg == logged_losses(tmp_path / "rbg_b") and len(rbg) == 3
    assert main_here(flags("threefry")) == 0
    assert jax.config.jax_default_prng_impl == "threefry2x32"
    threefry = logged_losses(tmp_path / "threefry")
    assert threefry[1] == logged_losses(uninterrupted)[1]  # Step 1 precedes any update: same init and dropout.
    assert all(rbg[s] != threefry[s] for s in (1, 2, 3))
  finally:
    loop.use_hardware_rng(False)

def t5_run(model_dir, data_dir, train_steps, *more) -> int:
  """The tiny T5's prompt trained from the command line in this process."""
  return main_here(["--gin_file=models/t5_1_1_tiny_prompt.gin", "--gin_file=runs/prompt_finetune.gin",
                    f"--gin.MODEL_DIR='{model_dir}'", "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'",
                    f"--gin.DATA_DIR='{data_dir}'", f"--gin.INITIAL_CHECKPOINT_PATH='{GOLDENS / 't5_tiny'}'",
                    f"--gin.TRAIN_STEPS={train_steps}", "--gin.EVAL_PERIOD=2", "--gin.PROMPT_LENGTH=4",
                    "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", "--gin.BATCH_SIZE=8",
                    "--gin.train_seq2seq.log_period=1", *more])


def test_t5_resume_is_exact_and_refuses_another_seed(data_dir, tmp_path, capsys):
  """The T5 trainer shares the data record and the skip option; its Adafactor has a constant rate, so a run
  stopped at step 4 and continued to 6 must match one that trained 6 steps at once."""
  skip = "--gin.train_seq2seq.skip_nonfinite_updates=True"
  assert t5_run(tmp_path / "whole", data_dir, 6, skip) == 0
  assert t5_run(tmp_path / "parts", data_dir, 4, skip) == 0
  assert t5_run(tmp_path / "parts", data_dir, 6, skip, "--gin.RANDOM_SEED=1") == 2
  assert ("was written over a different batch order: seed 0 there, 1 here (RANDOM_SEED)"
          in capsys.readouterr().err)
  assert t5_run(tmp_path / "parts", data_dir, 6, skip) == 0
  assert "batches resume at position 4." in capsys.readouterr().out
  whole, parts = logged_losses(tmp_path / "whole"), logged_losses(tmp_path / "parts")
  assert whole == parts and sorted(parts) == list(range(1, 7))
  assert_same_arrays(checkpoint_arrays(tmp_path / "whole", 6), checkpoint_arrays(tmp_path / "parts", 6))
  assert [r["skipped_updates"] for r in train_records(tmp_path / "parts")] == [0] * 6


def test_a_checkpoint_of_another_batch_order_is_refused(tmp_path):
  ids = [np.arange(1, 3 + i, dtype=np.int32) for i in range(12)]
  examples = batching.Examples(ids, [np.zeros_like(x) for x in ids], np.arange(12, dtype=np.int32) % 2)
  written = batching.TrainBatches(examples, 3, 32, seed=0)
  state = TrainState(jnp.asarray(4), {"w": jnp.ones((2,))}, {})
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save(state, {"best_step": 4, "data": written.state_dict(4)})
  checkpoints.close()

  like = TrainState(jnp.asarray(0), {"w": jnp.zeros((2,))}, {})
  restored, extra = loop.resume(Checkpoints(tmp_path), like, {"best_step": None}, written.state_dict)
  assert int(restored.step) == 4 and extra["data"] == {"seed": 0, "batch_size": 3, "examples": 12, "position": 4}
  with pytest.raises(loop.DataPositionMismatchError,
                     match=r"checkpoints/4 was written over a different batch order: seed 0 there, 7 here "
                           r"\(RANDOM_SEED\); batch_size 3 there, 4 here \(BATCH_SIZE\).*another MODEL_DIR"):
    loop.resume(Checkpoints(tmp_path), like, {}, batching.TrainBatches(examples, 4, 32, seed=7).state_dict)


def bag_of_embeddings(variables, input_ids, token_type_ids, attention_mask, task_ids=None, **unused):
  """A tiny real classifier for make_train_step: logits = the mean of the tokens' rows of params['emb']."""
  del token_type_ids, task_ids, unused
  mask = attention_mask[..., None].astype(jnp.float32)
  return (variables["params"]["emb"][input_ids] * mask).sum(1) / mask.sum(1)


def run_tiny(model_dir, bad_steps, max_consecutive, history, **loop_options):
  """loop.run over make_train_step(bag_of_embeddings, skip_nonfinite(AdamW)) for 12 steps; the batches of
  `bad_steps` (1-based) carry NaN weights, so their loss and gradients are NaN. Appends each step's parameters
  to `history`; loop_options go to loop.run."""
  tx = skip_nonfinite(optax.adamw(0.1), max_consecutive)
  model = EncoderModel(types.SimpleNamespace(apply=bag_of_embeddings, head_kind="sequence"))
  step_fn = jax.jit(make_train_step(model, tx), donate_argnums=0)

  def recorded_step(state, frozen, batch, rng):
    state, metrics = step_fn(state, frozen, batch, rng)
    history.append(np.asarray(state.trainable["emb"]))
    return state, metrics

  def batch_at(position):
    ids = np.random.default_rng(position).integers(1, 8, (4, 5)).astype(np.int32)
    weights = np.full((4,), np.nan if position + 1 in bad_steps else 1.0, np.float32)
    return {"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids),
            "labels": ids[:, 0] % 2, "task_ids": np.zeros((4,), np.int32), "weights": weights}

  params = {"emb": jax.random.normal(jax.random.key(0), (8, 2))}
  checkpoints, writer = Checkpoints(model_dir), MetricWriter(model_dir)
  try:
    return loop.run(TrainState(jnp.zeros((), jnp.int32), params, tx.init(params)), train_step=recorded_step,
                    frozen={}, batch_at=batch_at, rng=jax.random.key(0), train_steps=12, eval_period=5, log_period=4,
                    evaluate=lambda t: {"accuracy": 50.0}, export=lambda *a: None, checkpoints=checkpoints,
                    writer=writer, extra={}, max_consecutive_skips=max_consecutive, **loop_options)
  finally:
    checkpoints.close()
    writer.close()


def test_skip_nonfinite_skips_the_bad_update_and_trains_to_the_end(tmp_path, capsys):
  history = []
  state, _, _ = run_tiny(tmp_path, bad_steps={7}, max_consecutive=2, history=history)
  assert int(state.step) == 12 and len(history) == 12
  # history[i] holds the parameters after step i + 1: step 7's update, and no other, was skipped.
  assert [i + 1 for i in range(1, 12) if np.array_equal(history[i], history[i - 1])] == [7]
  assert np.isfinite(history[-1]).all()
  inner = state.opt_state.inner_state
  assert int(state.opt_state.total_notfinite) == 1 and int(inner[0].count) == 11  # The schedule skipped it too.
  assert "skipped the updates of steps [7] (1 skipped in all)" in capsys.readouterr().out
  logged = {r["step"]: r for r in train_records(tmp_path)}
  assert [logged[s]["skipped_updates"] for s in (4, 8, 12)] == [0, 1, 1]
  assert np.isfinite(logged[8]["loss"])  # The skipped step's NaN loss is left out of the period's mean.
  assert checkpoint_steps(tmp_path) == [5, 10, 12]


def test_too_many_nonfinite_updates_in_a_row_stop_and_keep_the_last_good_checkpoint(tmp_path):
  with pytest.raises(loop.NonFiniteLossError,
                     match=r"not finite for 3 steps in a row \(steps 7 to 9\), more than max_consecutive_nonfinite=2; "
                           r"training stopped and the last good checkpoint \(step 5\) is kept"):
    run_tiny(tmp_path, bad_steps={7, 8, 9, 10}, max_consecutive=2, history=[])
  assert checkpoint_steps(tmp_path) == [5]  # Nothing after the optimizer gave up was saved.
  with pytest.raises(ValueError, match="needs an optimizer wrapped by train_step.skip_nonfinite"):
    loop.run(TrainState(jnp.zeros((), jnp.int32), {}, optax.sgd(0.1).init({})), train_step=None, frozen={},
             batch_at=None, rng=None, train_steps=1, eval_period=1, log_period=1, evaluate=None, export=None,
             checkpoints=None, writer=None, extra={}, max_consecutive_skips=2)

