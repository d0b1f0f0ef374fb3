"""scripts/profile_step.py's accounting: the kinds add up to the step, dots are counted and classified (issue 21)."""

import sys

import jax
import jax.numpy as jnp
import pytest

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import profile_step  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_time_is_shared_by_what_runs_at_once_and_idle_is_host():
  kinds = {"a": ("dense matmuls", 10.0), "b": ("GELU", 0.0)}
  # a alone 0-10, a and b together 10-20, nothing 20-30, b alone 30-40 (ns); the window is 0-50.
  events = [(0, 20, "a"), (10, 20, "b"), (30, 40, "b"), (60, 70, "a")]
  seconds, flops = profile_step.split_window((0, 50), events, kinds.__getitem__)
  assert seconds == pytest.approx({"dense matmuls": 15e-9, "GELU": 15e-9, "host and idle": 20e-9})
  assert sum(seconds.values()) == pytest.approx(50e-9)
  assert flops == {"dense matmuls": 10.0, "GELU": 0.0}  # the event outside the window is not counted


def test_dots_are_found_counted_and_classified_in_the_compiled_module():
  def f(x, w, q, k):
    with jax.named_scope("mlp"), jax.named_scope("wi"):
      h = jnp.dot(x, w)
    with jax.named_scope("attention"):
      s = jnp.einsum("bqd,bkd->bqk", q, k)
    return jnp.tanh(h).sum() + jax.nn.softmax(s).sum()

  args = (jnp.ones((64, 32)), jnp.ones((32, 48)), jnp.ones((2, 8, 16)), jnp.ones((2, 12, 16)))
  classifier = profile_step.Classifier(jax.jit(f).lower(*args).compile().as_text())
  found = {}
  for name, instr in classifier.instructions.items():
    kind, flops = classifier.classify(name)
    if instr["opcode"] == "dot" or (flops and instr["opcode"] == "fusion"):
      found.setdefault(kind, set()).add(flops)
  assert 2.0 * 64 * 32 * 48 in found["dense matmuls"]
  assert 2.0 * 2 * 8 * 12 * 16 in found["attention matmuls"]
