"""Shared fixtures. The core suite needs only the repository and the packaged backbone."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Many tests (and the processes they start) compile the same tiny train steps: XLA's persistent cache lets each
# identical program compile once per checkout. The key covers the program, the flags and the jax version.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".cache" / "jax"))
# The suite's programs are tiny and run a few steps, so XLA's backend (LLVM) optimizations cost more compile time
# than they save: without them the 8-device mesh script takes 68 s of CPU instead of 181 s. Numerics tests pass at
# their tolerances either way; processes the tests start inherit the flag.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=0"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

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


def write_tiny_data(root: Path) -> Path:
  """Small SST-2 (GLUE tsv) and RTE (SuperGLUE jsonl) sets in the data-directory layout."""
  import json  # pylint: disable=g-import-not-at-top
  words = ["good", "great", "fine", "bad", "awful", "dull"]
  rows = [f"a {w} film {'and ' * (i % 5)}story\t{int(w in words[:3])}" for i, w in enumerate(words * 12)]
  (root / "glue" / "sst2").mkdir(parents=True)
  (root / "glue" / "sst2" / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
  (root / "glue" / "sst2" / "dev.tsv").write_text("sentence\tlabel\n" + "\n".join(rows[:12]) + "\n")
  pairs = [{"premise": f"The {w} cat sat on the mat.", "hypothesis": f"A {'cat' if i % 2 else 'dog'} sat.",
            "label": "entailment" if i % 2 else "not_entailment", "idx": i} for i, w in enumerate(words * 8)]
  (root / "superglue" / "rte").mkdir(parents=True)
  (root / "superglue" / "rte" / "train.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
  (root / "superglue" / "rte" / "val.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs[:10]))
  return root


def init_params(module, backbone, seed: int = 0, input_shape=(1, 8)):
  """The loaded backbone plus a fresh prompt and head for `module` (the contract's BaseModel.init_params)."""
  import jax  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models.encoder_model import EncoderModel  # pylint: disable=g-import-not-at-top
  return EncoderModel(module).init_params(jax.random.key(seed), backbone, {"input_ids": input_shape})
