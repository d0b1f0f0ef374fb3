"""The T5 1.1 port reproduces Hugging Face transformers on a tiny random checkpoint.

Fixture and goldens: tests/goldens/t5_tiny/ and t5_tiny_goldens.npz, made by
scripts/make_t5_goldens.py (2 encoder and 3 decoder layers, N * D != H, a padded batch
with one input longer than the relative-position max distance).
"""

import functools
import json
import shutil

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from safetensors.numpy import load_file, save_file

from conftest import GOLDENS, REPO
from prompt_tuning_jax.models.decoding import greedy_decode
from prompt_tuning_jax.models.t5 import T5, T5Config, relative_position_bucket
from prompt_tuning_jax.models.t5_checkpoint import CheckpointMismatchError, load_t5
from prompt_tuning_jax.models.t5_prompted import PromptedT5
from prompt_tuning_jax.axes import LOGICAL_AXIS_RULES

FIXTURE = GOLDENS / "t5_tiny"
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny():
  """(T5Config, params) of the fixture."""
  return load_t5(FIXTURE)


@pytest.fixture(scope="module")
def golden():
  return dict(np.load(GOLDENS / "t5_tiny_goldens.npz"))


def _forward(config, params, enc, dec, enc_mask=None, dec_mask=None, *, inputs_embeds=None, encoder_prefixes=None,
             decoder_prefixes=None, rngs=None):
  """(encoder states, logits) from one jitted apply (one compile instead of one per eager op).

  dec_mask [B, T'] stands in for the decoder targets (only `> 0` matters); None = all real.
  """
  enc_mask = np.asarray(enc) > 0 if enc_mask is None else enc_mask
  enable_dropout = rngs is not None

  def run(module, enc, dec, enc_mask, dec_mask, inputs_embeds, encoder_prefixes, decoder_prefixes):
    encoded = module.encode(enc, enable_dropout=enable_dropout, encoder_mask=enc_mask, inputs_embeds=inputs_embeds,
                            layer_prefixes=encoder_prefixes)
    return encoded, module.decode(encoded, enc, dec, dec_mask, enable_dropout=enable_dropout, encoder_mask=enc_mask,
                                  layer_prefixes=decoder_prefixes)

  fn = jax.jit(lambda p, r, *a: T5(config).apply({"params": p}, *a, method=run, rngs=r))
  out = fn(params, rngs, enc, dec, enc_mask, dec_mask, inputs_embeds, encoder_prefixes, decoder_prefixes)
  return tuple(np.asarray(x) for x in out)


@pytest.fixture(scope="module")
def outputs(tiny, golden):
  """Our (encoder states, logits) on the golden batch, float32."""
  return _forward(*tiny, golden["encoder_input_tokens"], golden["decoder_input_tokens"], golden["encoder_mask"],
                  golden["decoder_mask"])


def _max_error(ours, theirs, mask):
  return float(np.abs(np.where(mask.astype(bool)[..., None], ours - theirs, 0.0)).max())


def test_batch_exercises_padding_and_far_buckets(golden):
  lengths = golden["encoder_mask"].sum(1)
  assert len(set(lengths.tolist())) == len(lengths) and lengths.max() > 128 and lengths.min() < lengths.max()
  assert golden["decoder_mask"].sum(1).min() < golden["decoder_mask"].shape[1]


def test_relative_position_buckets():
  # key - query offsets; expected ids from transformers' T5Attention._relative_position_bucket.
  offsets = np.array([0, -1, 1, -7, -8, -11, -12, -16, -32, -64, -127, -128, -1000, 7, 8, 16, 128, 1000])
  bidirectional = [0, 1, 17, 7, 8, 8, 9, 10, 12, 14, 15, 15, 15, 23, 24, 26, 31, 31]
  causal = [0, 1, 0, 7, 8, 11, 12, 16, 21, 26, 31, 31, 31, 0, 0, 0, 0, 0]
  assert relative_position_bucket(offsets, True, 32, 128).tolist() == bidirectional
  assert relative_position_bucket(offsets, False, 32, 128).tolist() == causal


def test_encoder_states_match_transformers(outputs, golden):
  error = _max_error(outputs[0], golden["encoder_states"], golden["encoder_mask"])
  assert error <= TOLERANCE, error


def test_decoder_logits_match_transformers(outputs, golden):
  assert outputs[1].dtype == np.float32
  error = _max_error(outputs[1], golden["logits"], golden["decoder_mask"])
  assert error <= TOLERANCE, error


def test_greedy_decode_matches_transformers(tiny, golden):
  config, params = tiny
  assert np.array_equal(golden["encoder_mask"], golden["encoder_input_tokens"] > 0)  # the mask decoding rebuilds
  for cached in (True, False):
    decode = jax.jit(functools.partial(greedy_decode, PromptedT5(config), max_length=golden["greedy_ids"].shape[1],
                                       cached=cached))
    ids = decode({"backbone": params}, golden["encoder_input_tokens"])
    np.testing.assert_array_equal(np.asarray(ids), golden["greedy_ids"])


def test_inputs_embeds_and_explicit_mask_equal_token_ids(tiny, golden, outputs):
  config, params = tiny
  embeds = T5(config).apply({"params": params}, golden["encoder_input_tokens"], method=T5.embed_words)
  encoded, logits = _forward(config, params, None, golden["decoder_input_tokens"], golden["encoder_mask"],
                             golden["decoder_mask"], inputs_embeds=embeds)
  np.testing.assert_allclose(encoded, outputs[0], atol=1e-6)
  np.testing.assert_allclose(logits, outputs[1], atol=1e-6)
  with pytest.raises(ValueError, match="explicit encoder_mask"):
    T5(config).apply({"params": params}, None, inputs_embeds=embeds, enable_dropout=False, method=T5.encode)


def _prefixes(rng, num_layers, batch, length, config):
  shape = (batch, length, config.num_heads, config.d_kv)
  return [(jax.random.normal(jax.random.fold_in(rng, 2 * i), shape),
           jax.random.normal(jax.random.fold_in(rng, 2 * i + 1), shape)) for i in range(num_layers)]


def test_empty_prefixes_equal_no_prefix(tiny, golden, outputs):
  config, params = tiny
  b = golden["encoder_input_tokens"].shape[0]
  for encoder_prefixes, decoder_prefixes in (
      ([None] * config.num_encoder_layers, [None] * config.num_decoder_layers),
      (_prefixes(jax.random.key(0), config.num_encoder_layers, b, 0, config),
       _prefixes(jax.random.key(1), config.num_decoder_layers, b, 0, config))):
    _, logits = _forward(config, params, golden["encoder_input_tokens"], golden["decoder_input_tokens"],
                         golden["encoder_mask"], golden["decoder_mask"], encoder_prefixes=encoder_prefixes,
                         decoder_prefixes=decoder_prefixes)
    np.testing.assert_allclose(logits, outputs[1], atol=1e-6)


def test_prefix_is_visible_everywhere_and_ignores_padding(tiny, golden):
  config, params = tiny
  enc_prefixes = _prefixes(jax.random.key(2), config.num_encoder_layers, 1, 3, config)
  dec_prefixes = _prefixes(jax.random.key(3), config.num_decoder_layers, 1, 3, config)
  n, m = int(golden["encoder_mask"][1].sum()), int(golden["decoder_mask"][1].sum())
  enc, dec = golden["encoder_input_tokens"][1:2], golden["decoder_input_tokens"][1:2]
  alone = _forward(config, params, enc[:, :n], dec[:, :m], encoder_prefixes=enc_prefixes,
                   decoder_prefixes=dec_prefixes)
  padded = _forward(config, params, enc, dec, golden["encoder_mask"][1:2], golden["decoder_mask"][1:2],
                    encoder_prefixes=enc_prefixes, decoder_prefixes=dec_prefixes)
  np.testing.assert_allclose(padded[0][0, :n], alone[0][0], atol=1e-5)
  np.testing.assert_allclose(padded[1][0, :m], alone[1][0], atol=1e-5)
  # The decoder prefix lies before the first position: even position 0 attends to it.
  no_decoder_prefix = _forward(config, params, enc[:, :n], dec[:, :m], encoder_prefixes=enc_prefixes)
  np.testing.assert_array_equal(no_decoder_prefix[0], alone[0])
  assert np.abs(no_decoder_prefix[1][0, 0] - alone[1][0, 0]).max() > 1e-3


def test_dropout_and_bfloat16_run(tiny, golden):
  config, params = tiny
  args = [golden[k] for k in ("encoder_input_tokens", "decoder_input_tokens", "encoder_mask", "decoder_mask")]
  _, dropped = _forward(config, params, *args, rngs={"dropout": jax.random.key(0)})
  assert not np.allclose(dropped, golden["logits"], atol=1e-2)
  encoded, logits = _forward(config.replace(dtype="bfloat16"), params, *args)
  assert encoded.dtype == jnp.bfloat16 and logits.dtype == np.float32
  real = golden["decoder_mask"].astype(bool)
  agree = (logits.argmax(-1) == golden["logits"].argmax(-1))[real].mean()
  assert agree > 0.9, agree


def test_every_parameter_has_known_logical_axes(tiny):
  config, params = tiny
  ids = jnp.ones((1, 3), jnp.int32)
  boxed = jax.eval_shape(functools.partial(T5(config).init, enable_dropout=False), jax.random.key(0), ids, ids,
                         ids)["params"]
  rules = dict(LOGICAL_AXIS_RULES)
  leaves = jax.tree_util.tree_leaves_with_path(boxed, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))
  for path, leaf in leaves:
    assert isinstance(leaf, nn.LogicallyPartitioned), path
    assert len(leaf.names) == leaf.value.ndim and all(name in rules for name in leaf.names), (path, leaf.names)
  initialised = {k: tuple(v.shape) for k, v in traverse_util.flatten_dict(nn.meta.unbox(boxed), sep="/").items()}
  loaded = {k: v.shape for k, v in traverse_util.flatten_dict(params, sep="/").items()}
  assert initialised == loaded
  assert "decoder/layers_2/encoder_decoder_attention/out/kernel" in loaded
  assert loaded["encoder/relpos_bias/rel_embedding"] == (config.num_heads, 32)


def _write_fixture(path, tensors, config=None):
  path.mkdir()
  if config is None:
    shutil.copy(FIXTURE / "config.json", path / "config.json")
  else:
    (path / "config.json").write_text(json.dumps(config))
  save_file(tensors, str(path / "model.safetensors"))
  return path


def test_mismatches_are_listed(tmp_path):
  tensors = load_file(str(FIXTURE / "model.safetensors"))
  del tensors["encoder.block.1.layer.1.DenseReluDense.wi_0.weight"]
  tensors["decoder.block.0.layer.1.EncDecAttention.q.weight"] = np.zeros((48, 10), np.float32)
  tensors["decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight"] = np.zeros((32, 4), np.float32)
  with pytest.raises(CheckpointMismatchError) as e:
    load_t5(_write_fixture(tmp_path / "m", tensors))
  message = str(e.value)
  assert "missing (1): encoder/layers_1/mlp/wi_0/kernel" in message
  assert "unexpected (1): decoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" in message
  assert ("decoder.block.0.layer.1.EncDecAttention.q.weight -> decoder/layers_0/encoder_decoder_attention/query/kernel:"
          " checkpoint (10, 48), model (64, 48)") in message


def test_missing_lm_head_and_architecture_mismatches_are_refused(tmp_path, tiny):
  tensors = load_file(str(FIXTURE / "model.safetensors"))
  config = json.loads((FIXTURE / "config.json").read_text())
  # transformers >= 5 writes tie_word_embeddings=true for T5 1.1 too, marked by scale_decoder_outputs=false.
  v5_config = dict(config, tie_word_embeddings=True, scale_decoder_outputs=False)
  assert load_t5(_write_fixture(tmp_path / "v5", tensors, v5_config))[0] == tiny[0]
  del tensors["lm_head.weight"]
  with pytest.raises(CheckpointMismatchError, match=r"(?s)missing \(1\): decoder/logits_dense/kernel.*no lm_head"):
    load_t5(_write_fixture(tmp_path / "no_head", tensors))
  # T5 1.0 loads (tests/test_architectures.py); a 1.0 config over 1.1 weights lists what does not fit.
  with pytest.raises(CheckpointMismatchError, match=r"(?s)missing \(6\): decoder/layers_0/mlp/wi/kernel.*"
                                                    r"unexpected \(10\): decoder.block.0.layer.2.DenseReluDense.wi_0"):
    load_t5(_write_fixture(tmp_path / "relu", tensors, dict(config, feed_forward_proj="relu")))
  with pytest.raises(ValueError, match="feed_forward_proj 'gated-silu'"):
    load_t5(_write_fixture(tmp_path / "silu", tensors, dict(config, feed_forward_proj="gated-silu")))


@pytest.mark.parametrize("size, expected", [
    ("tiny", None),
    ("small", (512, 6, 64, 1024, 8)),
    ("base", (768, 12, 64, 2048, 12)),
    ("large", (1024, 16, 64, 2816, 24)),
    ("xl", (2048, 32, 64, 5120, 24)),
    ("xxl", (4096, 64, 64, 10240, 24)),
])
def test_gin_model_files_build_configs(size, expected, clean_gin, tiny):
  gin.parse_config_file(str(REPO / "gin" / "models" / f"t5_1_1_{size}.gin"))
  config = gin.get_configurable(T5Config)()
  if expected is None:  # tiny is the fixture's architecture.
    assert config == tiny[0]
    return
  d_model, heads, d_kv, d_ff, layers = expected
  assert config == T5Config(vocab_size=32128, d_model=d_model, num_heads=heads, d_kv=d_kv, d_ff=d_ff,
                            num_encoder_layers=layers, num_decoder_layers=layers, dropout_rate=0.1, dtype="bfloat16")
