"""Logical axis names and the rules mapping them onto a ('data', 'model') mesh.

Every parameter is created with `nn.with_logical_partitioning(init, AXES)` using the
names below; the rules follow t5x. Prompt axes are always replicated: prompts are tiny
and every device needs all of them.
"""

import flax.linen as nn

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
