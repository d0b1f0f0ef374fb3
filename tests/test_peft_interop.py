"""Prompts move between this package and peft with the same logits.

Goldens: tests/goldens/peft/ (scripts/make_peft_goldens.py; peft 0.21.2 on transformers 5.23): peft's logits,
on 20 SST-2 validation sentences with the packaged MiniLM, of (a) the adapters our exporter wrote from
our_deep / our_lester.safetensors and (b) adapters peft trained itself. Here, without torch, our model's
logits must equal them, and the exporter must still write those adapters.
"""

import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import GOLDENS
from prompt_tuning_jax import errors, export, export_peft, import_peft, peft_format
from prompt_tuning_jax.models.classifier import EncoderClassifier
from prompt_tuning_jax.models.encoder_model import EncoderModel
from prompt_tuning_jax.prompts.deep import DeepPrompt
from prompt_tuning_jax.prompts.input import InputPrompt

PEFT = GOLDENS / "peft"
GOLDEN = np.load(PEFT / "logits.npz")
PATTERNS = (r"prompt/.*", r"head/.*")


def our_logits(minilm, export_path, policy=None, pooling=None):
  """[n, 2] logits of our EncoderClassifier with the export restored as train.init_trainable_from does."""
  config, backbone = minilm
  _, metadata = export.load_export(export_path)
  p, policy = int(metadata["prompt_length"]), policy or metadata["position_policy"]
  prompt = (DeepPrompt(length=p, position_policy=policy) if metadata["prompt_kind"] == "DeepPrompt" else
            InputPrompt(length=p, position_policy=policy))
  module = EncoderClassifier(config, num_labels=2, prompt=prompt, pooling=pooling or metadata["pooling"])
  params = EncoderModel(module).init_params(jax.random.key(0), backbone, {"input_ids": (1, 8)})
  params = export.restore_matching(params, export_path, PATTERNS)
  return np.asarray(module.apply({"params": params}, GOLDEN["input_ids"], GOLDEN["token_type_ids"],
                                 GOLDEN["attention_mask"]))


@pytest.mark.parametrize("name", ["our_deep", "our_lester"])
def test_our_export_gives_peft_logits(minilm, name):
  logits = our_logits(minilm, PEFT / f"{name}.safetensors")
  golden = GOLDEN[f"logits_{name}"]
  assert golden.shape == (20, 2) and golden.std() > 0.05  # 20 sentences, logits that differ between them
  assert np.abs(logits - golden).max() <= 1e-4, np.abs(logits - golden).max()


def test_our_defaults_would_not_match(minilm):
  # The settings the exporter refuses really change the logits (so matching above is not an accident).
  logits = our_logits(minilm, PEFT / "our_deep.safetensors", policy="from_zero", pooling="cls")
  assert np.abs(logits - GOLDEN["logits_our_deep"]).max() > 1e-2


@pytest.mark.parametrize("name", ["our_deep", "our_lester"])
def test_exporter_writes_the_adapters_the_goldens_were_made_from(tmp_path, name):
  assert export_peft.main([str(PEFT / f"{name}.safetensors"), str(tmp_path / "a"),
                           "--base_model", "sentence-transformers/all-MiniLM-L6-v2"]) == 0
  committed, written = PEFT / f"{name}_adapter", tmp_path / "a"
  assert (json.loads((written / peft_format.CONFIG_FILE).read_text())
          == json.loads((committed / peft_format.CONFIG_FILE).read_text()))
  want, got = load_file(str(committed / peft_format.WEIGHTS_FILE)), load_file(str(written / peft_format.WEIGHTS_FILE))
  assert sorted(got) == sorted(want) == sorted(["prompt_embeddings", *peft_format.HEAD])
  for key in want:
    np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("name, kind", [("peft_prefix", "DeepPrompt"), ("peft_prompt", "InputPrompt")])
def test_peft_trained_adapter_imports_with_peft_logits(minilm, tmp_path, name, kind):
  out = tmp_path / "imported.safetensors"
  assert import_peft.main([str(PEFT / f"{name}_adapter"), str(out), "--task", "sst2"]) == 0
  _, metadata = export.load_export(out)
  assert metadata["prompt_kind"] == kind and metadata["position_policy"] == "after_prompt"
  logits = our_logits(minilm, out)
  golden = GOLDEN[f"logits_{name}"]
  assert golden.std() > 0.01
  assert np.abs(logits - golden).max() <= 1e-4, np.abs(logits - golden).max()
  # Round trip: exporting the import gives peft's own tensors back.
  config, adapter = peft_format.to_peft(*export.load_export(out))
  original = load_file(str(PEFT / f"{name}_adapter" / peft_format.WEIGHTS_FILE))
  for key in adapter:
    np.testing.assert_array_equal(adapter[key], original[key])
  assert config["peft_type"] == json.loads((PEFT / f"{name}_adapter" / peft_format.CONFIG_FILE).read_text())[
      "peft_type"]


def test_settings_peft_cannot_match_are_refused_in_one_line(tmp_path, capsys):
  tensors, metadata = export.load_export(PEFT / "our_deep.safetensors")
  export.save_export(tmp_path / "ours.safetensors", tensors,
                     {**metadata, "position_policy": "from_zero", "pooling": "cls"})
  assert export_peft.main([str(tmp_path / "ours.safetensors"), str(tmp_path / "out")]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0
  assert "position_policy 'from_zero'" in err and "pooling 'cls'" in err
  assert "PROMPT_POSITION_POLICY='after_prompt' POOLING='pooler'" in err
  assert not (tmp_path / "out").exists()
  lester, lester_meta = export.load_export(PEFT / "our_lester.safetensors")
  with pytest.raises(errors.ConfigError, match="pooling 'cls'.*'first_token_pooler'"):
    peft_format.to_peft(lester, {**lester_meta, "pooling": "cls"})


def test_bad_adapters_are_named(tmp_path):
  with pytest.raises(errors.MissingFileError, match="not a peft adapter directory: no adapter_config.json"):
    peft_format.read_adapter(tmp_path)
  config, adapter = peft_format.read_adapter(PEFT / "peft_prefix_adapter")
  with pytest.raises(errors.CheckpointError, match="peft_type 'LORA'.*task_type 'CAUSAL_LM'"):
    peft_format.from_peft({**config, "peft_type": "LORA", "task_type": "CAUSAL_LM"}, adapter)
  with pytest.raises(errors.CheckpointError, match=r"prompt_embeddings has shape \(4, 4608\).*needs \(4, 3840\)"):
    peft_format.from_peft({**config, "num_layers": 5}, adapter)
