"""No global settings: a run's DATA_DIR and vocabulary travel as values, so two runs in one process read their
own files and tokenize with their own vocabularies; gin's VOCABULARY macro reaches the prompt initializers; the
package imports no module in a cycle and the tasks import nothing from models/."""

import ast
import json
from pathlib import Path

import gin
import numpy as np
import seqio

from conftest import REPO, write_tiny_data
from prompt_tuning_jax import tasks
from prompt_tuning_jax.data import vocabularies
from prompt_tuning_jax import cli
from prompt_tuning_jax.prompts import initializers
from prompt_tuning_jax.tasks.sources import SHIPPED_DATA_DIR
from prompt_tuning_jax.tasks import loading

SPM = REPO / "tests" / "fixtures" / "t5_tiny_spm.model"
T5_LENGTHS = {"inputs": 64, "targets": 8}
# A vocab.txt of a few words: "good" (in the tiny RTE premises) is [UNK] here, not in MiniLM's.
TINY_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "cat", "sat", "on", "mat", ".", "a", "dog")
PACKAGE = REPO / "prompt_tuning_jax"


def _other_data(root: Path, premise: str) -> Path:
  """write_tiny_data with 3 RTE validation rows, the first with `premise`."""
  root = write_tiny_data(root)
  path = root / "superglue" / "rte" / "val.jsonl"
  rows = [json.loads(line) for line in path.read_text().splitlines()][:3]
  rows[0]["premise"] = premise
  path.write_text("".join(json.dumps(row) + "\n" for row in rows))
  return root


def test_two_data_dirs_in_one_process_read_their_own_files(tmp_path):
  first, second = write_tiny_data(tmp_path / "a"), _other_data(tmp_path / "b", "Zebras graze.")
  # Interleaved, as two runs sharing a process would ask; None is the shipped data.
  sizes = [len(loading.load_examples("rte", "validation", 64, data_dir=d)) for d in (first, second, first, None)]
  assert sizes == [10, 3, 10, 277]
  t5 = vocabularies.sentencepiece_vocabulary(SPM, 100)
  premise = lambda d: loading.load_text_examples("super_glue_rte_v102", "validation", T5_LENGTHS, data_dir=d,
                                                      vocabulary=t5).inputs_text[0]
  assert [("Zebras" in premise(d)) for d in (second, first, second)] == [True, False, True]
  # Each (name, data_dir, vocabulary) is built once; the task seqio registered still reads the shipped data.
  assert tasks.get_task("rte", data_dir=first) is tasks.get_task("rte", data_dir=str(first))
  assert tasks.get_task("rte", data_dir=first) is not tasks.get_task("rte", data_dir=second)
  registered = seqio.get_mixture_or_task("rte")
  assert registered is tasks.get_task("rte")
  assert registered.source._dataset_fn.data_dir == SHIPPED_DATA_DIR  # pylint: disable=protected-access


def test_two_wordpiece_vocabularies_in_one_process_tokenize_their_own_way(tmp_path):
  (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
  minilm, tiny = vocabularies.wordpiece_vocabulary(), vocabularies.wordpiece_vocabulary(tmp_path / "vocab.txt")
  assert tiny is vocabularies.wordpiece_vocabulary(str(tmp_path / "vocab.txt")) and tiny != minilm
  root = write_tiny_data(tmp_path / "data")
  for vocab in (minilm, tiny, minilm, tiny):
    first = loading.load_examples("rte", "validation", 64, data_dir=root, vocabulary=vocab).input_ids[0]
    expected = [vocab.cls_id, *vocab.encode("The good cat sat on the mat."), vocab.sep_id,
                *vocab.encode("A dog sat."), vocab.sep_id]
    assert first.tolist() == expected
    assert (vocab.unk_id in expected) == (vocab is tiny)
  # The prompt initializers tokenize with the vocabulary they are given.
  embeddings = np.random.default_rng(0).normal(size=(minilm.vocab_size, 4)).astype(np.float32)
  for vocab in (minilm, tiny):
    rows = initializers.class_labels(["the cat"], vocabulary=vocab)(np.zeros(2, np.uint32), (2, 4), embeddings)
    np.testing.assert_allclose(rows[0], embeddings[vocab.encode("the cat")].mean(0), atol=1e-6)


def test_two_sentencepiece_vocabularies_in_one_process_tokenize_their_own_way(tmp_path):
  other = tmp_path / "copy.model"
  other.write_bytes(SPM.read_bytes())
  extra_100 = vocabularies.sentencepiece_vocabulary(SPM, 100)
  extra_10 = vocabularies.sentencepiece_vocabulary(other, 10)
  root = _other_data(tmp_path / "data", "<extra_id_0>")
  for vocab, sentinel in ((extra_100, 511), (extra_10, 421), (extra_100, 511)):
    examples = loading.load_text_examples("super_glue_rte_v102", "validation", T5_LENGTHS, data_dir=root,
                                               vocabulary=vocab)
    assert sentinel in examples.inputs[0].tolist() and vocab.encode("<extra_id_0>") == [sentinel]
  task = tasks.get_task("super_glue_rte_v102", data_dir=root, vocabulary=extra_10)
  assert task.output_features["targets"].vocabulary is extra_10
  default = tasks.get_task("super_glue_rte_v102").output_features["inputs"].vocabulary
  assert default.sentencepiece_model_file == vocabularies.DEFAULT_SENTENCEPIECE_MODEL


def _gin_class_labels(gin_files, bindings, embeddings):
  """Row 0 of the prompt that gin's class_labels (labels and vocabulary from the bindings) initialises."""
  gin.clear_config()
  cli.register_configurables()
  cli.parse_gin(gin_files, bindings)
  return np.asarray(initializers.class_labels()(np.zeros(2, np.uint32), (2, 4), embeddings)[0])


def test_gin_vocabulary_macro_reaches_the_prompt_initializers(clean_gin, tmp_path):
  backbone = tmp_path / "backbone"  # Only its vocab.txt is read: the initializer is not run on its weights.
  backbone.mkdir()
  (backbone / "vocab.txt").write_text("\n".join(TINY_VOCAB) + "\n")
  embeddings = np.random.default_rng(0).normal(size=(600, 4)).astype(np.float32)
  row = _gin_class_labels(["sst2.gin", "methods/lester.gin", "prompts/from_class_labels.gin"],
                          ["MODEL_DIR = 'unused'", "TRAIN_STEPS = 1", "CLASS_LABELS = ['good dog']",
                           f"INITIAL_CHECKPOINT_PATH = '{backbone}'"], embeddings)
  np.testing.assert_allclose(row, embeddings[[1, 11]].mean(0), atol=1e-6)  # [UNK] dog: the tiny vocab.txt's ids.
  row = _gin_class_labels(["models/t5_1_1_tiny_prompt.gin", "prompts/from_class_labels.gin"],
                          ["CLASS_LABELS = ['<extra_id_0>']", f"SENTENCEPIECE_MODEL = '{SPM}'", "EXTRA_IDS = 10"],
                          embeddings)
  np.testing.assert_allclose(row, embeddings[421], atol=1e-6)  # The top extra id of 412 pieces + 10.


def _module(path: Path) -> str:
  parts = path.relative_to(REPO).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules, module_level: bool = True):
  """The package modules `path` imports (at module level, or anywhere), each as the longest known module name."""
  tree = ast.parse(path.read_text())
  for node in (tree.body if module_level else ast.walk(tree)):
    names = []
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
      names = [f"{node.module}.{alias.name}" for alias in node.names]
    for name in names:
      while name and name not in modules:
        name = name.rpartition(".")[0]
      if name:
        yield name


def _import_graph():
  """module -> the package modules importing it runs: the imported ones and, for a submodule, its packages
  (unless the importer is inside them: a package already being imported is not run again)."""
  modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
  graph = {}
  for name, path in modules.items():
    targets = set()
    for target in _imports(path, modules):
      while target and not (name == target or name.startswith(target + ".")):
        targets.add(target)
        target = target.rpartition(".")[0]
    graph[name] = targets
  return modules, graph


def test_no_import_cycles_and_the_tasks_import_nothing_from_models():
  modules, graph = _import_graph()
  cycles, state = [], {}

  def visit(node, path):
    state[node] = "open"
    for target in sorted(graph[node]):
      if state.get(target) == "open":
        cycles.append(" -> ".join(path[path.index(target):] + [target]))
      elif target not in state:
        visit(target, path + [target])
    state[node] = "done"

  for name in sorted(graph):
    if name not in state:
      visit(name, [name])
  assert not cycles
  into_models = {name: sorted(t for t in _imports(path, modules, module_level=False) if ".models" in t)
                 for name, path in modules.items() if name.startswith("prompt_tuning_jax.tasks")}
  assert not {name: targets for name, targets in into_models.items() if targets}
