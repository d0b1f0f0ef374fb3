"""Run safety (issue 22, items 4-6): a stale MODEL_DIR lock, resumes refused on other data or settings, a stop
signal inside the loop, a full disk. SIGTERM on the real command line and two runs on one MODEL_DIR:
tests/test_resume.py's test_sigterm_checkpoints_the_step_and_a_second_run_on_the_model_dir_is_refused."""

import json
import os
import signal
import socket
import subprocess
from pathlib import Path

import gin
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import save_file

from conftest import write_tiny_data
from test_bad_input import fails_with_one_line, saved_files
from test_resume import checkpoint_steps, main_here, run_tiny
from prompt_tuning_jax import cli, export
from prompt_tuning_jax.data import batching
from prompt_tuning_jax.training import fingerprint, loop, safety
from prompt_tuning_jax.training.checkpoints import Checkpoints
from prompt_tuning_jax.training.steps import TrainState


def flags(model_dir: Path, data_dir: Path, *more):
  return ["--gin_file=gin/sst2_deep_prompt.gin", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
          "--gin.TRAIN_STEPS=2", "--gin.EVAL_PERIOD=2", "--gin.BATCH_SIZE=8", "--gin.PROMPT_LENGTH=4",
          "--gin.TASK_FEATURE_LENGTHS={'inputs': 16}", *more]


def dead_pid() -> int:
  child = subprocess.Popen(["true"])
  child.wait()
  return child.pid


def refused(capsys, args, model_dir: Path) -> str:
  """The CLI in this process on `args` (fresh gin): one `error:` line, status 2, MODEL_DIR byte-for-byte as it
  was (config.gin included). Returns the line."""
  before = saved_files(model_dir)
  gin.clear_config()
  try:
    line = fails_with_one_line(capsys, args)
  finally:
    gin.clear_config()
  assert saved_files(model_dir) == before
  return line


def test_stale_lock_is_taken_over_and_resumes_of_other_data_or_settings_are_refused(capsys, tmp_path):
  data_dir, model_dir = write_tiny_data(tmp_path / "data"), tmp_path / "run"
  model_dir.mkdir()
  pid = dead_pid()
  (model_dir / "run.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": pid, "started": "earlier"}))
  assert main_here(flags(model_dir, data_dir)) == 0
  out = capsys.readouterr().out
  assert (f"Took over the stale lock {model_dir.resolve() / 'run.lock'} of host {socket.gethostname()} pid {pid} "
          "(since earlier): no live process holds it.") in out
  assert not (model_dir / "run.lock").exists()  # Released at exit.
  assert checkpoint_steps(model_dir) == [2]

  # The same rows in another order: same count, same batch-order record; only the content hash tells.
  train_tsv = data_dir / "glue" / "sst2" / "train.tsv"
  original = train_tsv.read_text()
  header, *rows = original.splitlines()
  train_tsv.write_text("\n".join([header, *reversed(rows)]) + "\n")
  line = refused(capsys, flags(model_dir, data_dir), model_dir)
  checkpoint = model_dir.resolve() / "checkpoints" / "2"
  assert line.startswith(f"error: checkpoint {checkpoint} was trained on other data: the training examples' "
                         "content hash is ")
  there, here = line.split("content hash is ")[1].split(" (the same")[0].split(" there, ")
  assert here.endswith(" here") and there != here[:-5] and len(there) == 16
  train_tsv.write_text(original)

  # Another learning rate and prompt length (each named with both values). A changed prompt shape is a mismatch,
  # not an unreadable checkpoint: no fall-back is offered, and asking for one moves nothing aside.
  line = refused(capsys, flags(model_dir, data_dir, "--gin.LEARNING_RATE=0.03", "--gin.PROMPT_LENGTH=8",
                               "--gin.Checkpoints.fall_back_to_previous=True"), model_dir)
  assert line == (f"error: checkpoint {checkpoint} was written with other settings: parameter shapes prompt/prefix "
                  "[6, 2, 4, 12, 32] there, [6, 2, 8, 12, 32] here (the prompt or method configuration, e.g. "
                  "PROMPT_LENGTH); optimizer.learning_rate 0.01 there, 0.03 here (LEARNING_RATE). Resuming would "
                  "continue a different training; set them back, or start the new run in another MODEL_DIR.")


def test_a_checkpoint_without_a_fingerprint_resumes_with_a_note_and_then_records_one(tmp_path, capsys):
  ids = [np.arange(1, 3 + i, dtype=np.int32) for i in range(12)]
  examples = batching.Examples(ids, [np.zeros_like(x) for x in ids], np.arange(12, dtype=np.int32) % 2)
  batches, params = batching.TrainBatches(examples, 3, 32, seed=0), {"w": jnp.ones((2,))}
  run_fingerprint = fingerprint.of_run(examples, params, ["w"], {"optimizer": "sgd", "learning_rate": 0.1})
  checkpoints = Checkpoints(tmp_path)
  checkpoints.save(TrainState(jnp.asarray(4), params, {}), {"best_step": 4, "data": batches.state_dict(4)})
  checkpoints.close()  # As an earlier version wrote it: no "fingerprint".

  like = TrainState(jnp.asarray(0), {"w": jnp.zeros((2,))}, {})
  restored, extra = loop.resume(Checkpoints(tmp_path), like, {}, batches.state_dict, run_fingerprint)
  assert int(restored.step) == 4 and extra["fingerprint"] == run_fingerprint  # Later checkpoints record it.
  assert (f"Checkpoint {tmp_path.resolve() / 'checkpoints' / '4'} records no fingerprint of its data and settings "
          "(written by an earlier version): resuming without checking that they match.") in capsys.readouterr().out
  # The same examples with one label changed: same count and batch order, another content hash.
  examples.labels[5] = 1 - examples.labels[5]
  assert fingerprint.data_hash(examples) != run_fingerprint["data"]


def test_sigint_in_the_loop_finishes_the_step_checkpoints_it_and_restores_the_handler(tmp_path):
  class SignalAfterStep3(list):
    """The tiny loop's parameter history; the interrupt arrives while step 3 is being recorded."""

    def append(self, item):
      super().append(item)
      if len(self) == 3:
        signal.raise_signal(signal.SIGINT)

  history = SignalAfterStep3()
  before = signal.getsignal(signal.SIGINT)
  with pytest.raises(safety.Stopped, match=r"stopped by SIGINT after step 3 of 12: saved checkpoint .*checkpoints/3 "
                                           r"\(batches resume at position 3\)") as stopped:
    with safety.stop_on_signals() as stop_requested:
      run_tiny(tmp_path, bad_steps=set(), max_consecutive=None, history=history, stop_requested=stop_requested)
  assert stopped.value.exit_status == 130 and signal.getsignal(signal.SIGINT) is before
  assert len(history) == 3 and checkpoint_steps(tmp_path) == [3]  # Step 3 finished; no step after it ran.
  params = {"emb": jnp.zeros((8, 2))}
  checkpoints = Checkpoints(tmp_path)
  state, extra = checkpoints.restore(TrainState(jnp.zeros((), jnp.int32), params, optax.adamw(0.1).init(params)))
  checkpoints.close()
  np.testing.assert_array_equal(state.trainable["emb"], history[-1])
  assert int(state.step) == 3 and extra["data"] == {"position": 3}


@pytest.fixture
def small_disk(tmp_path):
  """A 1 MiB tmpfs (mounting needs root with CAP_SYS_ADMIN; skipped otherwise)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True, text=True)
  if done.returncode != 0:
    pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip() or done.returncode}")
  try:
    yield disk
  finally:
    subprocess.run(["umount", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint_and_export(small_disk):
  model_dir = small_disk / "run"
  state = lambda step: TrainState(jnp.asarray(step), {"w": jnp.full((40_000,), float(step))}, {})  # 160 kB.
  checkpoints = Checkpoints(model_dir)
  checkpoints.save(state(1), {"best_step": 1})
  export_path = model_dir / "export" / "best.safetensors"
  export.save_export(export_path, {"prompt/prompt": np.ones((100, 250))}, {"task": "sst2", "step": 1})  # 100 kB.
  kept = saved_files(model_dir)
  filler = small_disk / "filler"
  filler.write_bytes(b"\0" * (os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize - (48 << 10)))

  with pytest.raises(safety.DiskFullError, match=rf"^no space left on the device for {model_dir.resolve()}/checkpoints"
                                                 r"/2: needs about 2\d\d,\d\d\d bytes, [\d,]+ bytes free; the "
                                                 r"previous checkpoint \(step 1\) is kept\. Free some space"):
    checkpoints.save(state(2), {"best_step": 2})
  with pytest.raises(safety.DiskFullError, match=rf"^no space left on the device for {export_path}: needs about "
                                                 r"100,\d\d\d bytes, [\d,]+ bytes free; the previous export is "
                                                 "kept"):
    export.save_export(export_path, {"prompt/prompt": np.zeros((100, 250))}, {"task": "sst2", "step": 2})
  # A write the estimate lets through but the disk refuses (ENOSPC itself) is the same line, its partial
  # temporary removed.
  partial = model_dir / "big.tmp"
  with pytest.raises(safety.DiskFullError, match=rf"^no space left on the device for {model_dir / 'big'}: the disk "
                                                 r"is full, [\d,]+ bytes free; nothing was written"):
    with safety.disk_full(model_dir / "big", None, "nothing was written", cleanup=lambda: partial.unlink()):
      partial.write_bytes(b"\0" * (100 << 10))
  assert not partial.exists()
  assert saved_files(model_dir) == kept and checkpoint_steps(model_dir) == [1]
  restored, _ = checkpoints.restore(state(0))
  checkpoints.close()
  assert int(restored.step) == 1 and float(restored.trainable["w"][0]) == 1.0
  # safetensors says ENOSPC only in its message (save_export's fallback when the estimate lets a write through).
  with pytest.raises(Exception) as full:
    save_file({"x": np.zeros((1 << 16,), np.float32)}, str(model_dir / "x.safetensors"))
  assert type(full.value).__name__ == "SafetensorError" and safety.is_disk_full(full.value)


def test_ctrl_c_outside_the_training_loop_is_one_line_and_releases_the_lock(capsys, clean_gin, tmp_path):
  def entry():  # Interrupted while loading: after fit.start took the lock, before the loop.
    safety.lock_dir(tmp_path)
    assert (tmp_path / "run.lock").exists()
    raise KeyboardInterrupt

  assert cli.run_cli(entry, []) == 128 + signal.SIGINT
  assert capsys.readouterr().err == ("interrupted (SIGINT) before the next checkpoint: nothing more was saved; rerun "
                                     "the same command to resume from the last checkpoint.\n")
  assert not (tmp_path / "run.lock").exists()
