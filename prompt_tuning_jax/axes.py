"""Logical axis names of every parameter and activation, and the rules that map them onto a
('data', 'model') mesh (t5x's). Models and prompts name their axes here; the training core's
Partitioner applies the rules. Prompt axes are always replicated: prompts are tiny and every
device needs all of them.

Parameters carry their names as flax boxes (`with_axes`); `params_axes` gives the same names as
t5x's `params_axes` collection (`<param>_axes` entries of `AxisMetadata`), which t5x's partitioner reads.
"""

from typing import Any, Dict

import flax.linen as nn
from flax.linen.partitioning import AxisMetadata

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


def params_axes(boxed_params) -> Dict[str, Any]:
  """t5x's `params_axes` collection for a tree of boxed parameters: beside each parameter `name`, an entry
  `name_axes` holding AxisMetadata(names=its logical axis names)."""
  def walk(tree):
    out = {}
    for name, value in tree.items():
      if isinstance(value, nn.LogicallyPartitioned):
        out[f"{name}_axes"] = AxisMetadata(names=tuple(value.names))
      elif isinstance(value, dict) or hasattr(value, "items"):
        inner = walk(value)
        if inner:
          out[name] = inner
    return out
  return walk(boxed_params)
