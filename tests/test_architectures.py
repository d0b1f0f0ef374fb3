"""ELECTRA, DistilBERT and a tied-embedding T5 (1.0 style) load through the backbone loaders that
INITIAL_CHECKPOINT_PATH uses, and reproduce transformers.

Goldens: tests/goldens/{electra_tiny,distilbert_tiny,t5_tied_tiny}/ and architectures.npz, made by
scripts/make_architecture_goldens.py (random tiny models saved by transformers 5.24).
"""

import json
import shutil

import jax
import numpy as np
import pytest

from conftest import GOLDENS
from prompt_tuning_jax import errors
from prompt_tuning_jax.models.bert import BertConfig, BertEncoder
from prompt_tuning_jax.models.bert_checkpoint import load_backbone, resolve_backbone_dir
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.t5 import T5
from prompt_tuning_jax.models.t5_checkpoint import load_t5

GOLDEN = np.load(GOLDENS / "architectures.npz")


@pytest.mark.parametrize("name, model_type, has_types", [("electra", "electra", True),
                                                         ("distilbert", "distilbert", False)])
def test_encoder_last_hidden_states_match_transformers(name, model_type, has_types):
  config, params = load_backbone(resolve_backbone_dir(str(GOLDENS / f"{name}_tiny")))
  assert config.model_type == model_type and not config.has_pooler and "pooler" not in params
  assert config.hidden_size == 32 and config.num_hidden_layers == 2 and config.intermediate_size == 64
  assert ("token_type_embeddings" in params["embeddings"]) == has_types
  g = {k: GOLDEN[f"{name}_{k}"] for k in ("input_ids", "token_type_ids", "attention_mask", "last_hidden_state")}
  hidden, pooled = BertEncoder(config).apply({"params": params}, g["input_ids"], g["token_type_ids"],
                                             g["attention_mask"])
  assert pooled is None
  real = g["attention_mask"][..., None].astype(bool)
  error = np.abs(np.where(real, np.asarray(hidden) - g["last_hidden_state"], 0)).max()
  assert error <= 1e-4, error
  assert np.abs(g["last_hidden_state"]).max() > 0.5  # the comparison is not of near-zeros


def test_electra_projects_its_narrower_embedding():
  config, params = load_backbone(GOLDENS / "electra_tiny")
  assert config.embedding_size == 16
  assert params["embeddings"]["word_embeddings"]["embedding"].shape == (96, 16)
  assert params["embeddings_project"]["kernel"].shape == (16, 32)


def test_pooler_pooling_without_a_pooler_is_refused():
  config, _ = load_backbone(GOLDENS / "distilbert_tiny")
  ids = np.ones((1, 4), np.int32)
  with pytest.raises(errors.ConfigError, match="distilbert backbone has no pooler.*POOLING='cls'"):
    EncoderClassifier(config, num_labels=2, pooling="pooler").init(jax.random.key(0), ids, ids, ids)


def test_tied_embedding_t5_logits_match_transformers():
  config, params = load_t5(GOLDENS / "t5_tied_tiny")
  assert config.feed_forward_proj == "relu" and config.tie_word_embeddings and config.scale_decoder_outputs
  assert "logits_dense" not in params["decoder"]
  targets = GOLDEN["t5_decoder_target_tokens"]
  logits = T5(config).apply({"params": params}, GOLDEN["t5_encoder_input_tokens"], GOLDEN["t5_decoder_input_tokens"],
                            targets, enable_dropout=False)
  real = (targets > 0)[..., None]
  error = np.abs(np.where(real, np.asarray(logits) - GOLDEN["t5_logits"], 0)).max()
  assert error <= 1e-4, error
  # Without the 1/sqrt(d_model) scale the logits would be off by far more than the tolerance.
  unscaled = T5(config.replace(scale_decoder_outputs=False)).apply(
      {"params": params}, GOLDEN["t5_encoder_input_tokens"], GOLDEN["t5_decoder_input_tokens"], targets,
      enable_dropout=False)
  assert np.abs(np.where(real, np.asarray(unscaled) - GOLDEN["t5_logits"], 0)).max() > 1.0


def _with_config(tmp_path, source, **changes):
  model_dir = tmp_path / "m"
  shutil.copytree(GOLDENS / source, model_dir)
  config = json.loads((model_dir / "config.json").read_text())
  config.update(changes)
  (model_dir / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
  return model_dir


def test_unknown_model_type_is_named(tmp_path):
  with pytest.raises(errors.CheckpointError, match=r"model_type 'deberta-v2'.*supported: \['bert', 'camembert', "
                                                   r"'distilbert', 'electra', 'roberta', 'xlm-roberta'\]"):
    load_backbone(_with_config(tmp_path, "distilbert_tiny", model_type="deberta-v2"))


def test_unknown_config_keys_are_named(tmp_path):
  # DistilBERT's keys read as BERT's would silently build MiniLM's sizes: they are named instead.
  with pytest.raises(errors.CheckpointError, match=r"model_type 'bert'\) has keys the encoder loader does not know: "
                                                   r"\['activation', 'attention_dropout', 'dim', 'dropout', "
                                                   r"'hidden_dim', 'n_heads', 'n_layers'\]"):
    load_backbone(_with_config(tmp_path, "distilbert_tiny", model_type="bert"))
  with pytest.raises(errors.CheckpointError, match=r"position_embedding_type': 'relative_key'"):
    BertConfig.from_dict({"model_type": "bert", "position_embedding_type": "relative_key"})


def test_flan_t5_config_names_load(tmp_path):
  # Flan-T5's config.json (transformers 4 era) spells the gated-GELU MLP three ways and keeps an untied head.
  flan = {"dense_act_fn": "gelu_new", "is_gated_act": True, "feed_forward_proj": "gated-gelu", "n_positions": 512,
          "output_past": True, "tie_word_embeddings": False, "task_specific_params": {"summarize": {}}}
  config, params = load_t5(_with_config(tmp_path, "t5_tiny", **flan))
  assert config.feed_forward_proj == "gated-gelu" and not config.tie_word_embeddings
  assert not config.scale_decoder_outputs and "logits_dense" in params["decoder"]
  with pytest.raises(errors.CheckpointError, match="feed_forward_proj 'gated-silu'"):
    load_t5(_with_config(tmp_path / "silu", "t5_tiny", feed_forward_proj="gated-silu", dense_act_fn="silu"))


def test_tied_t5_through_the_trainers_restore():
  # train_seq2seq restores INITIAL_CHECKPOINT_PATH through t5x_checkpoint.restore_backbone against the gin config.
  from prompt_tuning_jax.models import t5x_checkpoint  # pylint: disable=g-import-not-at-top
  config, params = load_t5(GOLDENS / "t5_tied_tiny")
  restored, description = t5x_checkpoint.restore_backbone(GOLDENS / "t5_tied_tiny", config)
  assert "Hugging Face checkpoint" in description
  np.testing.assert_array_equal(restored["token_embedder"]["embedding"], params["token_embedder"]["embedding"])
  t5_1_1 = config.replace(feed_forward_proj="gated-gelu", tie_word_embeddings=False, scale_decoder_outputs=False)
  with pytest.raises(errors.CheckpointError, match="feed_forward_proj=relu \\(gin: gated-gelu\\), "
                                                   "tie_word_embeddings=True \\(gin: False\\)"):
    t5x_checkpoint.restore_backbone(GOLDENS / "t5_tied_tiny", t5_1_1)
