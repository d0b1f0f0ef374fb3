"""extract_prompt: a t5x run's prompt (and head) into our export format, without t5x.

The runs are t5x's checkpoint layout as t5x writes it for our models (parameters 'backbone/...', 'prompt/...',
'head/...'), written here with the legacy-layout writer; tests/test_t5x.py extracts from real t5x runs (Orbax)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from prompt_tuning_jax import export
from prompt_tuning_jax.models import t5x_checkpoint


def _run(*args):
  return subprocess.run([sys.executable, "-m", "prompt_tuning_jax.extract_prompt", *map(str, args)],
                        capture_output=True, text=True, timeout=120)


def _write_run(model_dir, step, extra):
  rng = np.random.default_rng(step)
  params = {"backbone": {"token_embedder": {"embedding": rng.normal(size=(16, 8)).astype(np.float32)}}, **extra}
  return t5x_checkpoint.write_checkpoint(params, model_dir, step)


def test_extracts_the_latest_prompt_and_head(tmp_path):
  prompt = np.arange(24, dtype=np.float32).reshape(3, 8)
  _write_run(tmp_path / "run", 0, {"prompt": {"prompt": np.zeros((3, 8), np.float32)}})
  _write_run(tmp_path / "run", 20, {"prompt": {"prompt": prompt},
                                    "head": {"kernel": np.ones((8, 2), np.float32), "bias": np.full(2, 0.5, np.float32)}})
  result = _run("--checkpoint", tmp_path / "run", "--output", tmp_path / "p.safetensors")
  assert result.returncode == 0, result.stderr
  assert "checkpoint_20" in result.stdout and "prompt/prompt (3, 8)" in result.stdout
  tensors, metadata = export.load_export(tmp_path / "p.safetensors")
  assert sorted(tensors) == ["head/bias", "head/kernel", "prompt/prompt"]
  np.testing.assert_array_equal(tensors["prompt/prompt"], prompt)
  assert metadata["prompt_kind"] == "InputPrompt" and json.loads(metadata["prompt_length"]) == 3
  assert json.loads(metadata["step"]) == 20


def test_deep_prompt_metadata_and_patterns(tmp_path):
  prefix = np.ones((4, 2, 5, 2, 3), np.float32)
  step_dir = _write_run(tmp_path / "run", 7, {"prompt": {"prefix": prefix}, "head": {"bias": np.zeros(2, np.float32)}})
  result = _run("--checkpoint", step_dir, "--output", tmp_path / "p.safetensors", "--patterns", "prompt/.*")
  assert result.returncode == 0, result.stderr
  tensors, metadata = export.load_export(tmp_path / "p.safetensors")
  assert list(tensors) == ["prompt/prefix"] and metadata["prompt_kind"] == "DeepPrompt"
  assert json.loads(metadata["prompt_length"]) == 5 and json.loads(metadata["prompt_width"]) == 6


@pytest.mark.parametrize("extra, expected", [
    ({}, "no parameter matching"),
    ({"prompt": {"embedding": np.ones((5, 8), np.float32), "dense": {"kernel": np.ones((8, 8), np.float32)}}},
     "PROMPT_REPARAM_HIDDEN = None"),
])
def test_refuses_what_it_cannot_export(tmp_path, extra, expected):
  _write_run(tmp_path / "run", 0, extra)
  result = _run("--checkpoint", tmp_path / "run", "--output", tmp_path / "p.safetensors")
  assert result.returncode == 2 and result.stderr.startswith("error:") and expected in result.stderr, result.stderr
  assert "Traceback" not in result.stderr and not (tmp_path / "p.safetensors").exists()


def test_missing_checkpoint_is_one_line(tmp_path):
  result = _run("--checkpoint", tmp_path / "nothing", "--output", tmp_path / "p.safetensors")
  assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_the_t5x_adapter_says_what_is_missing():
  try:
    import t5x  # pylint: disable=g-import-not-at-top,unused-import
    pytest.skip("t5x is installed: the adapter imports")
  except ImportError:
    pass
  with pytest.raises(ImportError, match="needs t5x, which is not installed"):
    import prompt_tuning_jax.t5x  # pylint: disable=g-import-not-at-top,unused-import
