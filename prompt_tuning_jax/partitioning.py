"""Logical axis names and the rules mapping them onto a ('data', 'model') mesh.

Every parameter is created with `nn.with_logical_partitioning(init, AXES)` using the
names below; the rules follow t5x. Prompt axes are always replicated: prompts are tiny
and every device needs all of them.
"""

from typing import Optional, Tuple

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "model")

LOGICAL_AXIS_RULES = (
    ("batch", "data"),
    ("vocab", "model"),
    ("mlp", "model"),
    ("heads", "model"),
    ("joined_kv", "model"),
    ("embed", None),
    ("kv", None),
    ("length", None),
    ("abspos", None),
    ("token_types", None),
    ("layers", None),
    ("relpos_buckets", None),
    ("classes", None),
    ("tasks", None),
    # Prompt axes: replicated.
    ("prompt_length", None),
    ("prompt_layers", None),
    ("prompt_kv", None),
    ("prompt_heads", None),
    ("prompt_head_dim", None),
    ("prompt_embed", None),
    ("prompt_mlp", None),
)


def with_axes(init, *axes):
  """An initializer that records logical axis names on the parameter it makes."""
  return nn.with_logical_partitioning(init, axes)


def make_mesh(num_partitions: int = 1, mesh_shape: Optional[Tuple[int, int]] = None, devices=None) -> Mesh:
  """A ('data', 'model') mesh over `devices` (default all): mesh_shape, or
  (num_devices // num_partitions, num_partitions)."""
  devices = list(jax.devices() if devices is None else devices)
  if mesh_shape is None:
    if num_partitions < 1 or len(devices) % num_partitions:
      raise ValueError(f"{len(devices)} devices cannot be split into {num_partitions} model partitions.")
    mesh_shape = (len(devices) // num_partitions, num_partitions)
  if int(np.prod(mesh_shape)) != len(devices):
    raise ValueError(f"mesh shape {tuple(mesh_shape)} needs {int(np.prod(mesh_shape))} devices; there are "
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
    raise ValueError(f"BATCH_SIZE={global_batch_size} is not divisible by the data-parallel size "
                     f"{mesh.shape['data']} (mesh {dict(mesh.shape)}); choose a multiple of it.")
  return NamedSharding(mesh, PartitionSpec("data"))


def optimizer_state_shardings(init_fn, sharded_trainable, mesh: Mesh):
  """Shardings for init_fn(trainable) (an optax init): moments follow the sharding XLA
  propagates from their parameter; scalars (step counts) are replicated."""
  replicated = NamedSharding(mesh, PartitionSpec())
  state = jax.jit(init_fn)(sharded_trainable)
  return jax.tree.map(lambda x: x.sharding if isinstance(x.sharding, NamedSharding) and x.ndim else replicated,
                      state)
