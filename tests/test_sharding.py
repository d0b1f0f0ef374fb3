"""Partitioned training equals one device: 5 train steps on meshes (8,1), (4,2), (2,4) of 8 simulated
CPU devices, for the BERT-family backbone and the tiny T5, and both trainers themselves on a (4, 2) mesh
(training and evaluation); each in a process of its own (the device count is fixed at start-up)."""

import json
import os
import socket
import subprocess
import sys

import jax
import pytest

from conftest import GOLDENS, REPO, write_tiny_data
from prompt_tuning_jax.training import partitioning

def _devices_env(count: int) -> dict:
  """The environment of a process with `count` simulated CPU devices (the suite's XLA flags kept)."""
  flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
  return dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")


EIGHT_DEVICES = _devices_env(8)


def test_meshes_give_the_losses_of_one_device():
  out = subprocess.run([sys.executable, str(REPO / "tests" / "multidevice" / "sharded_losses.py"), "8x1", "4x2",
                        "2x4"], cwd=REPO, env=EIGHT_DEVICES, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  for model in ("bert", "t5"):
    single = result[model]["single"]
    assert len(single) == 5 and single[0] > single[-1], (model, single)  # Training, not standing still.
    for mesh in ("8x1", "4x2", "2x4"):
      assert result[model][mesh] == pytest.approx(single, abs=1e-5), (model, mesh, result[model][mesh], single)
    # Model partitions split the frozen weights: less of them on each device.
    mib = result["per_device_mib"]
    assert mib[f"{model}/2x4"] < mib[f"{model}/4x2"] < mib[f"{model}/8x1"] == mib[f"{model}/single"], mib


def _train_command(data_dir, model_dir, *extra):
  return [sys.executable, "-m", "prompt_tuning_jax.train", "--gin_file=gin/sst2.gin",
          "--gin_file=gin/methods/deep_prompt.gin", f"--gin.MODEL_DIR='{model_dir}'", f"--gin.DATA_DIR='{data_dir}'",
          "--gin.TRAIN_STEPS=6", "--gin.EVAL_PERIOD=6", "--gin.BATCH_SIZE=8", "--gin.PROMPT_LENGTH=4",
          "--gin.train.log_period=1", *extra]


def test_the_trainer_on_a_mesh_matches_one_device(tmp_path):
  data_dir = write_tiny_data(tmp_path / "data")
  single = subprocess.run(_train_command(data_dir, tmp_path / "one"), cwd=REPO, capture_output=True, text=True,
                          timeout=600)
  assert single.returncode == 0, single.stderr[-3000:]
  meshed = subprocess.run(_train_command(data_dir, tmp_path / "mesh", "--gin.MESH_SHAPE=(4, 2)"), cwd=REPO,
                          env=EIGHT_DEVICES, capture_output=True, text=True, timeout=600)
  assert meshed.returncode == 0, meshed.stderr[-3000:]
  logs = {name: [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
          for name in ("one", "mesh")}
  losses = {name: [r["loss"] for r in rows if r["split"] == "train"] for name, rows in logs.items()}
  assert len(losses["one"]) == 6 and losses["mesh"] == pytest.approx(losses["one"], abs=1e-5), losses
  evals = {name: [r for r in rows if r["split"] == "validation"][-1] for name, rows in logs.items()}
  assert evals["mesh"]["loss"] == pytest.approx(evals["one"]["loss"], abs=1e-5), evals
  memory = json.loads((tmp_path / "mesh" / "memory.json").read_text())
  assert memory["devices"] == 8 and memory["mesh"] == {"data": 4, "model": 2}, memory
  assert memory["frozen_parameters_per_device_mib"] < memory["frozen_parameters_mib"], memory
  assert "Memory: frozen parameters" in meshed.stdout and "per device" in meshed.stdout


def test_t5_evaluation_on_a_mesh_has_the_metrics_of_one_device(tmp_path):
  """Training the tiny T5's prompt for 2 steps: the (4, 2) mesh evaluates (decoding, scoring, rank
  classification through the partitioner) to the metrics of one device, and results.json names the
  selection metric."""
  data_dir = write_tiny_data(tmp_path / "data")
  command = lambda name, *extra: [
      sys.executable, "-m", "prompt_tuning_jax.train", "--gin_file=models/t5_1_1_tiny_prompt.gin",
      "--gin_file=runs/prompt_finetune.gin", f"--gin.MODEL_DIR='{tmp_path / name}'", f"--gin.DATA_DIR='{data_dir}'",
      "--gin.MIXTURE_OR_TASK_NAME='super_glue_rte_v102'", f"--gin.INITIAL_CHECKPOINT_PATH='{GOLDENS / 't5_tiny'}'",
      "--gin.TASK_FEATURE_LENGTHS={'inputs': 32, 'targets': 8}", "--gin.PROMPT_LENGTH=4", "--gin.TRAIN_STEPS=2",
      "--gin.EVAL_PERIOD=2", "--gin.BATCH_SIZE=8", "--gin.train_seq2seq.eval_batch_size=16", *extra]
  runs = {"one": subprocess.run(command("one"), cwd=REPO, capture_output=True, text=True, timeout=600),
          "mesh": subprocess.run(command("mesh", "--gin.MESH_SHAPE=(4, 2)"), cwd=REPO, env=EIGHT_DEVICES,
                                 capture_output=True, text=True, timeout=600)}
  for name, out in runs.items():
    assert out.returncode == 0, (name, out.stderr[-3000:])
  results = {name: json.loads((tmp_path / name / "results.json").read_text()) for name in runs}
  assert results["one"]["selection_metric"] == "accuracy" and "validation_accuracy" in results["one"]
  one, mesh = results["one"]["validation_metrics"], results["mesh"]["validation_metrics"]
  assert {"accuracy", "rank_accuracy", "loss"} <= set(one) and set(mesh) == set(one)
  assert mesh == pytest.approx(one, abs=1e-4), (mesh, one)
  memory = json.loads((tmp_path / "mesh" / "memory.json").read_text())
  assert memory["devices"] == 8 and memory["mesh"] == {"data": 4, "model": 2}, memory


def test_batch_not_divisible_by_the_data_parallel_size_from_the_cli(tmp_path):
  data_dir, model_dir = write_tiny_data(tmp_path / "data"), tmp_path / "run"
  (model_dir / "export").mkdir(parents=True)
  (model_dir / "export" / "best.safetensors").write_bytes(b"saved before")
  command = _train_command(data_dir, model_dir, "--gin.MESH_SHAPE=(8, 1)", "--gin.BATCH_SIZE=12")
  out = subprocess.run(command, cwd=REPO, env=EIGHT_DEVICES, capture_output=True, text=True, timeout=300)
  assert out.returncode == 2, out.stderr[-3000:]
  errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
  assert errors == ["error: BATCH_SIZE=12 is not divisible by the data-parallel size 8 (mesh {'data': 8, "
                    "'model': 1}); choose a multiple of it."], out.stderr[-3000:]
  assert "Traceback" not in out.stderr
  assert (model_dir / "export" / "best.safetensors").read_bytes() == b"saved before"


def test_mesh_and_batch_errors_name_the_sizes():
  with pytest.raises(ValueError, match=r"1 devices cannot be split into 2 model partitions"):
    partitioning.make_mesh(num_partitions=2, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"mesh shape \(2, 2\) needs 4 devices; there are 1"):
    partitioning.make_mesh(mesh_shape=(2, 2), devices=jax.devices()[:1])
  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  assert dict(mesh.shape) == {"data": 1, "model": 1}
  assert partitioning.batch_sharding(mesh, 3).spec == jax.sharding.PartitionSpec("data")


def test_two_hosts_feeding_their_own_rows_give_the_losses_of_one_device():
  """Two processes of 4 simulated devices each (jax.distributed over localhost) train on one (4, 2) mesh."""
  script = str(REPO / "tests" / "multidevice" / "sharded_losses.py")
  single = subprocess.run([sys.executable, script, "--models=bert"], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert single.returncode == 0, single.stderr[-3000:]
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  hosts = [subprocess.Popen([sys.executable, script, "--models=bert", "--distributed", "4x2"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(_devices_env(4), JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                                     JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(i))) for i in range(2)]
  outputs = [host.communicate(timeout=600) for host in hosts]
  assert [h.returncode for h in hosts] == [0, 0], [err[-2000:] for _, err in outputs]
  expected = json.loads(single.stdout.strip().splitlines()[-1])["bert"]["single"]
  for process, (out, _) in enumerate(outputs):
    result = json.loads(out.strip().splitlines()[-1])
    assert result["process"] == process
    assert result["bert"]["4x2"] == pytest.approx(expected, abs=1e-5), (process, result["bert"], expected)
