"""The Partitioner that places a training run on a ('data', 'model') mesh by the parameters'
logical axes (axes.py: the names and t5x's rules that map them onto the mesh).

Multi-host: `initialize_distributed` calls `jax.distributed.initialize()` when the
environment asks for it (JAX_COORDINATOR_ADDRESS, or a detected cluster with
`Partitioner.distributed=True`). Every host computes the same global batch order (batches
are a pure function of (seed, step)) and materialises only its own rows, which
`Partitioner.global_batch` assembles into one global array.
"""

import os
from typing import Callable, Dict, Optional, Tuple

import flax.linen as nn
import gin
import jax
import numpy as np
import seqio
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from prompt_tuning_jax import errors
from prompt_tuning_jax.axes import LOGICAL_AXIS_RULES

MESH_AXES = ("data", "model")


def make_mesh(num_partitions: int = 1, mesh_shape: Optional[Tuple[int, int]] = None, devices=None) -> Mesh:
  """A ('data', 'model') mesh over `devices` (default all): mesh_shape, or
  (num_devices // num_partitions, num_partitions)."""
  devices = list(jax.devices() if devices is None else devices)
  if mesh_shape is None:
    if num_partitions < 1 or len(devices) % num_partitions:
      raise errors.ConfigError(f"{len(devices)} devices cannot be split into {num_partitions} model partitions.")
    mesh_shape = (len(devices) // num_partitions, num_partitions)
  if int(np.prod(mesh_shape)) != len(devices):
    raise errors.ConfigError(f"mesh shape {tuple(mesh_shape)} needs {int(np.prod(mesh_shape))} devices; there are "
                             f"{len(devices)}.")
  return Mesh(np.asarray(devices).reshape(mesh_shape), MESH_AXES)


def logical_axes(boxed_params):
  """Params as created (with nn.LogicallyPartitioned boxes) -> a tree of PartitionSpecs of
  logical axis names (unannotated parameters get an empty spec: replicated)."""
  return nn.get_partition_spec(boxed_params)


def param_shardings(axes_tree, mesh: Mesh, rules=LOGICAL_AXIS_RULES):
  """Logical PartitionSpecs (and matching shapes) -> NamedShardings on `mesh`.

  axes_tree: a tree of (PartitionSpec, shape) pairs, from `logical_axes` zipped with the
  parameters' shapes. A dimension that the mesh axis does not divide evenly (e.g. a
  30,522-word vocabulary over 4 partitions) is replicated instead, as t5x would require
  padding for it.
  """
  def one(spec_and_shape):
    spec, shape = spec_and_shape
    mesh_spec = nn.logical_to_mesh_axes(spec, rules)
    fitted = [axis if axis is None or shape[i] % mesh.shape[axis] == 0 else None
              for i, axis in enumerate(tuple(mesh_spec) + (None,) * (len(shape) - len(mesh_spec)))]
    return NamedSharding(mesh, PartitionSpec(*fitted))
  return jax.tree.map(one, axes_tree, is_leaf=lambda x: isinstance(x, tuple) and len(x) == 2 and
                      isinstance(x[0], PartitionSpec))


def batch_sharding(mesh: Mesh, global_batch_size: int) -> NamedSharding:
  """Batch arrays split over 'data' on their first axis; checks divisibility."""
  if global_batch_size % mesh.shape["data"]:
    raise errors.ConfigError(f"BATCH_SIZE={global_batch_size} is not divisible by the data-parallel size "
                             f"{mesh.shape['data']} (mesh {dict(mesh.shape)}); choose a multiple of it.")
  return NamedSharding(mesh, PartitionSpec("data"))


def init_optimizer_state(init_fn, sharded_trainable, mesh: Mesh):
  """init_fn(trainable) (an optax init) on the mesh -> (state, its shardings): moments follow the sharding XLA
  propagates from their parameter; scalars (step counts) are replicated."""
  replicated = NamedSharding(mesh, PartitionSpec())
  state = jax.jit(init_fn)(sharded_trainable)
  shardings = jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) and x.ndim else replicated,
                           state)
  return jax.device_put(state, shardings), shardings


def initialize_distributed(force: bool = False) -> None:
  """jax.distributed.initialize() when JAX_COORDINATOR_ADDRESS is set (with JAX_NUM_PROCESSES and
  JAX_PROCESS_ID) or `force` (clusters jax detects itself: Cloud TPU, SLURM, Open MPI, Kubernetes)."""
  if jax.distributed.is_initialized() or not (force or os.environ.get("JAX_COORDINATOR_ADDRESS")):
    return
  env = {name: int(os.environ[var]) for name, var in (("num_processes", "JAX_NUM_PROCESSES"),
                                                      ("process_id", "JAX_PROCESS_ID")) if var in os.environ}
  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes talk over TCP (tests, CPU pods).
  jax.distributed.initialize(**env)


class CompiledByInputShape:
  """A jitted function compiled ahead of time once per shape of its argument `key_arg` (a dict of
  arrays, e.g. the batch: one compile per length bucket). Ahead-of-time compiling gives XLA's
  memory analysis of the executable that actually runs, without a second compile."""

  def __init__(self, jitted, key_arg: int):
    self._jitted, self._key_arg, self._compiled = jitted, key_arg, {}

  def compiled(self, *args):
    key = tuple((k, tuple(v.shape)) for k, v in sorted(args[self._key_arg].items()))
    if key not in self._compiled:
      self._compiled[key] = self._jitted.lower(*args).compile()
    return self._compiled[key]

  def __call__(self, *args):
    return self.compiled(*args)(*args)


def _nbytes(tree) -> int:
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def _device_bytes(tree) -> int:
  """Bytes of `tree` that live on the first device (its shards)."""
  device = jax.devices()[0]
  return int(sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards if s.device == device))


@gin.configurable
class Partitioner:
  """The ('data', 'model') mesh of a run and the shardings of its parameters, optimizer state and
  batches; t5x's PjitPartitioner in small.

  Attributes:
    num_partitions: model-parallel size; the mesh is (devices // num_partitions, num_partitions).
    mesh_shape: an explicit (data, model) shape; overrides num_partitions.
    distributed: call jax.distributed.initialize() even without JAX_COORDINATOR_ADDRESS (cluster
      auto-detection).
  """

  def __init__(self, num_partitions: int = 1, mesh_shape: Optional[Tuple[int, int]] = None,
               distributed: bool = False, devices=None):
    initialize_distributed(distributed)
    self.mesh = make_mesh(num_partitions, None if mesh_shape is None else tuple(mesh_shape), devices)
    self.replicated = NamedSharding(self.mesh, PartitionSpec())

  @property
  def data_size(self) -> int:
    return self.mesh.shape["data"]

  def shardings(self, tree, axes: Dict[str, PartitionSpec]):
    """NamedShardings for a nested dict of parameters, by their 'a/b/c' paths in `axes`."""
    def one(path, x):
      spec = axes.get("/".join(k.key for k in path), PartitionSpec())
      return param_shardings((spec, x.shape), self.mesh)
    return jax.tree_util.tree_map_with_path(one, tree)

  def place(self, trainable, frozen, axes: Dict[str, PartitionSpec], init_opt_state: Callable):
    """Puts trainable and frozen parameters on the mesh and creates the optimizer state there.
    Returns (trainable, opt_state, frozen, (trainable_shardings, opt_state_shardings, frozen_shardings))."""
    trainable_sh, frozen_sh = self.shardings(trainable, axes), self.shardings(frozen, axes)
    trainable = jax.device_put(trainable, trainable_sh)
    opt_state, opt_sh = init_optimizer_state(init_opt_state, trainable, self.mesh)
    return trainable, opt_state, jax.device_put(frozen, frozen_sh), (trainable_sh, opt_sh, frozen_sh)

  def batch_sharding(self, global_batch_size: int) -> NamedSharding:
    return batch_sharding(self.mesh, global_batch_size)

  def shard_info(self) -> seqio.ShardInfo:
    """This host's share of every global batch (seqio's convention: index of num_shards)."""
    return seqio.ShardInfo(index=jax.process_index(), num_shards=jax.process_count())

  def global_batch(self, batch: Dict[str, np.ndarray]) -> Dict[str, jax.Array]:
    """A global batch (identical on every host) -> global arrays split over 'data'; each host contributes
    only its own rows (shard_info), so no host ever transfers another's."""
    size = len(next(iter(batch.values())))
    sharding, shard = self.batch_sharding(size), self.shard_info()
    rows = slice(shard.index * size // shard.num_shards, (shard.index + 1) * size // shard.num_shards)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)[rows], v.shape)
            for k, v in batch.items()}

  def jit_train_step(self, train_step: Callable, state_sh, frozen_sh, global_batch_size: int):
    """train_step(state, frozen, batch, rng) -> (state, metrics), jitted with in/out shardings and the
    state donated, compiled ahead of time per batch shape."""
    jitted = jax.jit(train_step, in_shardings=(state_sh, frozen_sh, self.batch_sharding(global_batch_size),
                                               self.replicated),
                     out_shardings=(state_sh, self.replicated), donate_argnums=0)
    return CompiledByInputShape(jitted, key_arg=2)

  def jit_eval_step(self, eval_step: Callable, trainable_sh, frozen_sh, global_batch_size: int):
    """eval_step(trainable, frozen, batch) -> outputs, batch split over 'data', outputs replicated (every host
    reads all of them); takes the host's global batch as numpy."""
    jitted = jax.jit(eval_step, in_shardings=(trainable_sh, frozen_sh, self.batch_sharding(global_batch_size)),
                     out_shardings=self.replicated)
    return lambda trainable, frozen, batch: jitted(trainable, frozen, self.global_batch(batch))

  def memory_report(self, state, frozen, compiled_step) -> Dict[str, float]:
    """MiB of the frozen parameters, trainable parameters and optimizer state (total and on one
    device) and XLA's estimate of the train step's temporaries (activations and gradients) per device."""
    analysis = compiled_step.memory_analysis()
    mib = lambda n: round(n / 2 ** 20, 2)
    report = {"devices": len(jax.devices()), "mesh": dict(self.mesh.shape)}
    for name, tree in (("frozen_parameters", frozen), ("trainable_parameters", state.trainable),
                       ("optimizer_state", state.opt_state)):
      report[f"{name}_mib"], report[f"{name}_per_device_mib"] = mib(_nbytes(tree)), mib(_device_bytes(tree))
    report["step_temporaries_per_device_mib"] = mib(analysis.temp_size_in_bytes) if analysis else None
    return report
