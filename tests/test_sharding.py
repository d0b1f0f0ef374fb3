"""Partitioned training equals one device: 5 deep-prompt steps on meshes (8,1), (4,2), (2,4)
of 8 simulated CPU devices, in a process of its own (the device count is fixed at start-up)."""

import json
import os
import subprocess
import sys

import jax
import pytest

from conftest import REPO
from prompt_tuning_jax import partitioning


def test_meshes_give_the_losses_of_one_device():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, str(REPO / "tests" / "multidevice" / "sharded_losses.py"), "8x1", "4x2",
                        "2x4"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  losses = json.loads(out.stdout.strip().splitlines()[-1])
  single = losses["single"]
  assert len(single) == 5 and single[0] > single[-1]  # Training, not standing still.
  for mesh in ("8x1", "4x2", "2x4"):
    assert losses[mesh] == pytest.approx(single, abs=1e-5), (mesh, losses[mesh], single)


def test_mesh_and_batch_errors_name_the_sizes():
  with pytest.raises(ValueError, match=r"1 devices cannot be split into 2 model partitions"):
    partitioning.make_mesh(num_partitions=2, devices=jax.devices()[:1])
  with pytest.raises(ValueError, match=r"mesh shape \(2, 2\) needs 4 devices; there are 1"):
    partitioning.make_mesh(mesh_shape=(2, 2), devices=jax.devices()[:1])
  mesh = partitioning.make_mesh(devices=jax.devices()[:1])
  assert dict(mesh.shape) == {"data": 1, "model": 1}
  assert partitioning.batch_sharding(mesh, 3).spec == jax.sharding.PartitionSpec("data")
