"""`python -m prompt_tuning_jax.inspect`: an export's metadata and each prompt position's nearest tokens."""

import numpy as np

from conftest import GOLDENS
from prompt_tuning_jax import export, inspect
from prompt_tuning_jax.models.bert_checkpoint import default_backbone_dir


def test_input_prompt_positions_name_the_tokens_they_were_made_from(tmp_path, minilm, capsys):
  _, params = minilm
  vocab = (default_backbone_dir() / "vocab.txt").read_text(encoding="utf-8").splitlines()
  words = ["movie", "terrible", "wonderful"]
  table = np.asarray(params["embeddings"]["word_embeddings"]["embedding"])
  prompt = np.stack([table[vocab.index(w)] for w in words])
  tensors, metadata = export.load_export(GOLDENS / "peft" / "our_lester.safetensors")
  export.save_export(tmp_path / "e.safetensors", {**tensors, "prompt/prompt": prompt},
                     {**metadata, "prompt_length": 3})
  assert inspect.main([str(tmp_path / "e.safetensors"), "--top", "2"]) == 0
  out = capsys.readouterr().out
  assert "  pooling: first_token_pooler" in out and "  tensor prompt/prompt: (3, 384)" in out
  rows = [line for line in out.splitlines() if line.lstrip()[:2] in ("0:", "1:", "2:")]
  assert [row.split()[1] for row in rows] == words
  assert all("(1.00)" in row for row in rows)


def test_deep_prompt_compares_layer_0_only(capsys):
  assert inspect.main([str(GOLDENS / "peft" / "our_deep.safetensors"), "--top", "3"]) == 0
  out = capsys.readouterr().out
  assert "layer 0 keys: nearest" in out and "layer 0 values: nearest" in out
  assert "layers 1 and up: not compared" in out
  assert sum(line.lstrip().startswith(("0:", "1:", "2:", "3:")) for line in out.splitlines()) == 8  # P=4, keys+values


def test_missing_backbone_is_one_line(tmp_path, capsys):
  tensors, metadata = export.load_export(GOLDENS / "peft" / "our_deep.safetensors")
  export.save_export(tmp_path / "e.safetensors", tensors, {**metadata, "backbone": str(tmp_path / "gone")})
  assert inspect.main([str(tmp_path / "e.safetensors")]) == 2
  assert "gone does not exist" in capsys.readouterr().err
