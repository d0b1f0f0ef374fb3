"""P-Tuning v1: the virtual-token encoder and the template-based insertion."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prompt_tuning_jax.axes import LOGICAL_AXIS_RULES
from prompt_tuning_jax.prompts.ptuning import PTuningEncoder, _LstmDirection, insert_virtual_tokens

H = 8
TABLE = jnp.zeros((11, H))  # a stand-in [V, H] word-embedding table; only H is read


def _reference(types, mask, template):
  """Plain-Python insertion: per row, a list of ('t', j) text and ('v', k) virtual slots + their types."""
  c0, c1, c2 = tuple(template) + (0,) * (3 - len(template))
  out = []
  for row_types, row_mask in zip(types.tolist(), mask.tolist()):
    n = sum(row_mask)
    sep = max(j for j in range(n) if row_types[j] == 0)
    is_pair = any(row_types[j] == 1 for j in range(n))
    cls, a, b = [0], list(range(1, sep + 1)), list(range(sep + 1, n - 1 if is_pair else n))
    final, pad = ([n - 1] if is_pair else []), list(range(n, len(row_mask)))
    v = iter(range(c0 + c1 + c2))
    t = lambda js: [("t", j, row_types[j], row_mask[j]) for j in js]
    virt = lambda c, typ: [("v", next(v), typ, 1) for _ in range(c)]
    out.append(t(cls) + virt(c0, 0) + t(a) + virt(c1, 1) + t(b) + virt(c2, 1) + t(final) + t(pad))
  return out


def _batch():
  # Row 0: pair [CLS] a a [SEP] b b [SEP] pad pad; row 1: single [CLS] a [SEP] pad x6.
  types = np.array([[0, 0, 0, 0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0]], np.int32)
  mask = np.array([[1, 1, 1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0, 0]], np.int32)
  b, t = types.shape
  # Text embeddings encode (row, position) as 100 * row + position + 1, all > 0; virtual ones are < 0.
  words = jnp.broadcast_to((100 * np.arange(b)[:, None] + np.arange(t) + 1.0)[..., None], (b, t, H))
  return words, jnp.asarray(types), jnp.asarray(mask)


def _decode(embeds):
  """Turns combined embeddings back into ('t', j) / ('v', k) slots."""
  rows = []
  for r, row in enumerate(np.asarray(embeds[..., 0])):
    rows.append([("t", int(x) - 100 * r - 1) if x > 0 else ("v", int(-x) - 1) for x in row])
  return rows


@pytest.mark.parametrize("encoder", ["lstm", "mlp"])
def test_encoder_output_shape_and_axes(encoder):
  enc = PTuningEncoder(length=5, encoder=encoder, template=(2, 2, 1))
  variables = enc.init(jax.random.key(0), TABLE)
  out = enc.apply(variables, TABLE)
  assert out.shape == (5, H) and bool(jnp.all(jnp.isfinite(out)))
  assert float(jnp.std(out, axis=0).max()) > 0  # virtual tokens differ from one another
  names = set(variables["params"])
  expected = {"embedding", "mlp_in", "mlp_out"}
  if encoder == "lstm":
    expected |= {f"lstm_{l}_{d}" for l in (0, 1) for d in ("fwd", "bwd")}
  assert names == expected
  replicated = {name for name, rule in LOGICAL_AXIS_RULES if rule is None and name.startswith("prompt_")}
  boxed = jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, nn.Partitioned))
  assert boxed and all(isinstance(p, nn.Partitioned) and set(p.names) <= replicated for p in boxed)


def test_template_and_options_are_validated():
  with pytest.raises(ValueError, match=r"template \(3, 3\) sums to 6, but the prompt length is 5"):
    PTuningEncoder(length=5).init(jax.random.key(0), TABLE)
  with pytest.raises(ValueError, match="Unknown encoder"):
    PTuningEncoder(length=6, encoder="gru").init(jax.random.key(0), TABLE)
  with pytest.raises(ValueError, match="position_policy"):
    PTuningEncoder(length=6, position_policy="middle").init(jax.random.key(0), TABLE)
  words, types, mask = _batch()
  with pytest.raises(ValueError, match="sums to 4, but the prompt length is 3"):
    insert_virtual_tokens(jnp.zeros((3, H)), words, types, mask, (2, 2))


@pytest.mark.parametrize("template", [(3, 3), (2, 1, 3), (0, 4), (1, 0, 0), (0, 0, 2)])
def test_insert_matches_the_python_reference(template):
  words, types, mask = _batch()
  p = sum(template)
  virtual = -(jnp.arange(p, dtype=jnp.float32)[:, None] + 1.0) * jnp.ones((1, H))  # virtual k -> -(k+1)
  fn = jax.jit(insert_virtual_tokens, static_argnums=4)
  embeds, out_types, out_mask, cls_index = fn(virtual, words, types, mask, template)
  assert cls_index == 0 and embeds.shape == (2, 9 + p, H) and out_types.shape == out_mask.shape == (2, 9 + p)
  ref = _reference(np.asarray(types), np.asarray(mask), template)
  assert _decode(embeds) == [[(kind, j) for kind, j, _, _ in row] for row in ref]
  np.testing.assert_array_equal(out_types, [[typ for *_, typ, _ in row] for row in ref])
  np.testing.assert_array_equal(out_mask, [[m for *_, m in row] for row in ref])
  # Real tokens keep their order, [CLS] stays first and padding stays at the end with mask 0.
  for row, n in zip(_decode(embeds), np.asarray(mask).sum(-1)):
    assert [j for kind, j in row if kind == "t"] == list(range(9)) and row[0] == ("t", 0)
    assert all(kind == "t" and j >= n for kind, j in row[n + p:])
  assert np.asarray(out_mask).sum(-1).tolist() == (np.asarray(mask).sum(-1) + p).tolist()


def test_insert_hand_checked_positions_and_batched_virtual():
  words, types, mask = _batch()
  virtual = -(jnp.arange(2 * 6, dtype=jnp.float32).reshape(2, 6, 1) + 1.0) * jnp.ones((1, 1, H))  # [B, P, H]
  embeds, out_types, out_mask, _ = insert_virtual_tokens(virtual, words, types, mask, (3, 2, 1))
  v = lambda *ks: [("v", k) for k in ks]
  t = lambda *js: [("t", j) for j in js]
  assert _decode(embeds) == [
      t(0) + v(0, 1, 2) + t(1, 2, 3) + v(3, 4) + t(4, 5) + v(5) + t(6, 7, 8),
      t(0) + v(6, 7, 8) + t(1, 2) + v(9, 10, 11) + t(3, 4, 5, 6, 7, 8)]
  np.testing.assert_array_equal(out_types[0], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(out_mask[1], [1] * 9 + [0] * 6)


def test_lstm_gradients_are_finite_and_nonzero():
  enc = PTuningEncoder(length=4, encoder="lstm", template=(2, 2))
  params = nn.meta.unbox(enc.init(jax.random.key(0), TABLE)["params"])
  target = jax.random.normal(jax.random.key(1), (4, H))
  grads = jax.grad(lambda p: jnp.sum((enc.apply({"params": p}, TABLE) - target) ** 2))(params)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    assert bool(jnp.all(jnp.isfinite(g))), path
    assert float(jnp.abs(g).max()) > 0, path


@pytest.mark.parametrize("reverse", [False, True])
def test_lstm_direction_matches_a_numpy_loop(reverse):
  x = np.asarray(jax.random.normal(jax.random.key(2), (5, 6)))
  cell = _LstmDirection(hidden=3, reverse=reverse)
  params = nn.meta.unbox(cell.init(jax.random.key(0), x)["params"])
  wi, wh, bias = (np.asarray(params[k], np.float64) for k in ("wi", "wh", "bias"))
  sig = lambda z: 1 / (1 + np.exp(-z))
  c, h, expected = np.zeros(3), np.zeros(3), np.zeros((5, 3))
  for step in (reversed(range(5)) if reverse else range(5)):
    i, f, g, o = np.split(x[step] @ wi + bias + h @ wh, 4)  # torch gate order
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = expected[step] = sig(o) * np.tanh(c)
  np.testing.assert_allclose(cell.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-6)


def test_lstm_encoder_is_bidirectional():
  enc = PTuningEncoder(length=4, encoder="lstm", template=(2, 2))
  params = nn.meta.unbox(enc.init(jax.random.key(0), TABLE)["params"])
  out = lambda emb: enc.apply({"params": {**params, "embedding": emb}}, TABLE)
  jac = jax.jacobian(out)(params["embedding"])  # [P, H, P, H]
  # Every virtual token sees every embedding row: the first depends on the last and vice versa.
  assert float(jnp.abs(jac[0, :, -1]).max()) > 0 and float(jnp.abs(jac[-1, :, 0]).max()) > 0
