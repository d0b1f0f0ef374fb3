"""The package's layers, read from its import statements (every import, also those inside functions).

models/, prompts/, data/ and tasks/ import nothing from training/ or the command line; prompts/
imports no backbone; tasks/ imports no model; the training core imports no backbone file, only
the model contract; no module imports itself through others (no cycles); and no function is
longer than 80 lines.
"""

import ast
from pathlib import Path
from typing import Dict, Set

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "prompt_tuning_jax"
NAME = "prompt_tuning_jax"
COMMAND_LINE = {f"{NAME}.cli", f"{NAME}.train", f"{NAME}.eval", f"{NAME}.infer", f"{NAME}.recipes"}


def module_name(path: Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: Set[str]) -> Set[str]:
  """The package's modules `path` imports (`from a import b` counts a.b when that is a module, else a)."""
  out = set()
  package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.Import):
      out |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
      for alias in node.names:
        out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
  # Importing a.b.c first runs the packages a and a.b: their __init__ modules are imported too.
  out |= {".".join(m.split(".")[:i]) for m in set(out) for i in range(1, m.count(".") + 1)}
  return {m for m in out if m in modules and m != module_name(path) and not module_name(path).startswith(m + ".")}


@pytest.fixture(scope="module")
def graph() -> Dict[str, Set[str]]:
  files = sorted(PACKAGE.rglob("*.py"))
  modules = {module_name(f) for f in files}
  return {module_name(f): imported(f, modules) for f in files}


def _under(module: str, *prefixes: str) -> bool:
  return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_layers_exist(graph):
  for layer in ("models", "prompts", "data", "tasks", "training", "recipes", "cli"):
    assert f"{NAME}.{layer}" in graph, layer


def test_lower_layers_import_neither_training_nor_the_command_line(graph):
  lower = [f"{NAME}.{layer}" for layer in ("models", "prompts", "data", "tasks")]
  bad = {(m, d) for m, deps in graph.items() if _under(m, *lower) for d in deps
         if _under(d, f"{NAME}.training", *COMMAND_LINE)}
  assert not bad, sorted(bad)


def test_prompts_import_no_backbone_and_tasks_no_model(graph):
  bad = {(m, d) for m, deps in graph.items() for d in deps
         if (_under(m, f"{NAME}.prompts") or _under(m, f"{NAME}.tasks")) and _under(d, f"{NAME}.models")}
  assert not bad, sorted(bad)


def test_the_training_core_imports_only_the_model_contract(graph):
  bad = {(m, d) for m, deps in graph.items() if _under(m, f"{NAME}.training") for d in deps
         if (_under(d, f"{NAME}.models") and d not in (f"{NAME}.models", f"{NAME}.models.base")) or
         _under(d, *COMMAND_LINE)}
  assert not bad, sorted(bad)


def test_no_import_cycles(graph):
  state: Dict[str, int] = {}  # 1: on the current path, 2: done.

  def visit(module, path):
    state[module] = 1
    for dep in sorted(graph[module]):
      if state.get(dep) == 1:
        pytest.fail(f"import cycle: {' -> '.join(path[path.index(dep):] + [dep])}")
      if dep not in state:
        visit(dep, path + [dep])
    state[module] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module, [module])


def test_no_function_is_longer_than_80_lines():
  long = []
  for path in sorted(PACKAGE.rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
        long.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} "
                    f"({node.end_lineno - node.lineno + 1} lines)")
  assert not long, long


def _imports_t5x(path: Path) -> bool:
  for node in ast.walk(ast.parse(path.read_text())):
    names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
             [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
    if any(n == "t5x" or n.startswith("t5x.") for n in names):
      return True
  return False


def test_only_the_t5x_adapter_imports_t5x(graph):
  """t5x is optional: prompt_tuning_jax.t5x imports it and nothing else in the package imports either."""
  importers = {module_name(p) for p in PACKAGE.rglob("*.py") if _imports_t5x(p)}
  assert importers and all(_under(m, f"{NAME}.t5x") for m in importers), sorted(importers)
  users = {m for m, deps in graph.items() if not _under(m, f"{NAME}.t5x") for d in deps if _under(d, f"{NAME}.t5x")}
  assert not users, sorted(users)
