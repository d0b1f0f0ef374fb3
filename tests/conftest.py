"""Shared fixtures. The core suite needs only the repository and the packaged backbone."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

from pathlib import Path  # pylint: disable=g-import-not-at-top

import gin  # pylint: disable=g-import-not-at-top
import pytest  # pylint: disable=g-import-not-at-top

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
GOLDENS = REPO / "tests" / "goldens"


@pytest.fixture(scope="session")
def minilm():
  """(BertConfig, params) of the packaged all-MiniLM-L6-v2."""
  from prompt_tuning_jax.models.bert_checkpoint import load_backbone
  return load_backbone()


@pytest.fixture
def clean_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def require_shared_data(*relative):
  """Skips the test, naming the files, when ../shared/data lacks them."""
  missing = [r for r in relative if not (SHARED_DATA / r).exists()]
  if missing:
    pytest.skip(f"shared data not available: {', '.join(str(SHARED_DATA / m) for m in missing)}")
