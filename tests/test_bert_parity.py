"""The loaded all-MiniLM-L6-v2 reproduces Hugging Face transformers.

Goldens: tests/goldens/minilm_pairs.{json,npz}, made by scripts/make_minilm_goldens.py.
"""

import json

import numpy as np

from conftest import GOLDENS
from prompt_tuning_jax.models.bert import BertEncoder


def test_last_hidden_states_match_transformers(minilm):
  config, params = minilm
  golden = np.load(GOLDENS / "minilm_pairs.npz")
  assert golden["input_ids"].shape[0] >= 8
  lengths = golden["attention_mask"].sum(1)
  assert len(set(lengths.tolist())) >= 6, "pairs must have different lengths"
  hidden, pooled = BertEncoder(config).apply(
      {"params": params}, golden["input_ids"], golden["token_type_ids"], golden["attention_mask"])
  real = golden["attention_mask"][..., None].astype(bool)
  err_real = np.abs(np.where(real, np.asarray(hidden) - golden["last_hidden_state"], 0)).max()
  err_all = np.abs(np.asarray(hidden) - golden["last_hidden_state"]).max()
  assert err_real <= 1e-4, err_real
  assert err_all <= 1e-4, err_all
  assert np.abs(np.asarray(pooled) - golden["pooler_output"]).max() <= 1e-4


def test_goldens_describe_their_examples():
  meta = json.loads((GOLDENS / "minilm_pairs.json").read_text())
  golden = np.load(GOLDENS / "minilm_pairs.npz")
  assert len(meta["examples"]) == golden["input_ids"].shape[0]
  assert golden["input_ids"].shape[1] <= meta["max_length"]
