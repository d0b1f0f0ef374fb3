"""Tiny hand-written data in every encoder task's file layout under a data directory (DATA_DIR).

Built from the samples in tests/fixtures (none of it is CoNLL-2003 text), repeated so a training split holds at
least `copies` x its sample; `write_task_data(root)` returns root.
"""

import gzip
import json
import shutil
from pathlib import Path

from prompt_tuning_jax.tasks.extractive_qa import MRQA_IN_DOMAIN, MRQA_OUT_OF_DOMAIN

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _jsonl(path: Path, rows) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _rows(name: str):
  return [json.loads(line) for line in (FIXTURES / "superglue" / f"{name}.jsonl").read_text().splitlines()]


def _labelled(rows, labels):
  """The rows that carry a label, then copies of them with the given labels cycling (new idx each)."""
  rows = [r for r in rows if "label" in r]
  return [dict(rows[i % len(rows)], idx=i, label=labels[i % len(labels)]) for i in range(8)]


def _copa(copies: int):
  things = ["glass", "vase", "plate", "bottle", "lamp", "mirror", "clock", "bowl"]
  rows = []
  for i in range(8 * copies):
    thing = things[i % len(things)]
    if i % 2:
      rows.append({"premise": f"The {thing} was in pieces.", "choice1": "Someone polished it.",
                   "choice2": f"The {thing} fell off the shelf.", "question": "cause", "idx": i, "label": 1})
    else:
      rows.append({"premise": f"The {thing} fell off the shelf.", "choice1": f"The {thing} broke.",
                   "choice2": f"The {thing} sang.", "question": "effect", "idx": i, "label": 0})
  return rows


def _multirc(copies: int):
  (row,) = _rows("multirc")
  out, question = [], 0
  for i in range(2 * copies):
    passage = json.loads(json.dumps(row["passage"]))
    for q in passage["questions"]:
      q["idx"], question = question, question + 1
    out.append({"idx": i, "version": 1.1, "passage": passage})
  return out


def _record(copies: int):
  (row,) = _rows("record")
  out = []
  for i in range(2 * copies):
    qas = [dict(row["qas"][0], idx=2 * i), dict(row["qas"][0], idx=2 * i + 1,
                                                query="The @placeholder links the harbour to the island.",
                                                answers=[{"start": 45, "end": 60, "text": "Lindqvist Bridge"}])]
    out.append(dict(row, idx=i, qas=qas))
  return out


def _conll(path: Path, sample: Path, copies: int) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  text = sample.read_text(encoding="utf-8").rstrip("\n") + "\n\n"
  path.write_text(text * copies, encoding="utf-8")


def _squad(path: Path, version_2: bool, copies: int) -> None:
  root = json.loads((FIXTURES / "squad_v2_sample.json").read_text())
  articles = []
  for i in range(copies):
    article = json.loads(json.dumps(root["data"][0]))
    for paragraph in article["paragraphs"]:
      paragraph["qas"] = [dict(qa, id=f"{qa['id']}_{i}") for qa in paragraph["qas"]
                          if version_2 or not qa.get("is_impossible")]
    articles.append(article)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({"version": "v2.0" if version_2 else "1.1", "data": articles}), encoding="utf-8")


def write_task_data(root: Path, copies: int = 2) -> Path:
  """Every encoder task's files under root, in the layout tasks/README.md describes."""
  sg = root / "superglue"
  for split in ("train", "val"):
    _jsonl(sg / "boolq" / f"{split}.jsonl", _labelled(_rows("boolq"), [True, False]))
    _jsonl(sg / "cb" / f"{split}.jsonl", _labelled(_rows("cb"), ["contradiction", "neutral", "entailment"]))
    _jsonl(sg / "wic" / f"{split}.jsonl", _labelled(_rows("wic"), [False, True]))
    _jsonl(sg / "wsc" / f"{split}.jsonl", _labelled(_rows("wsc"), [True, False]))
    _jsonl(sg / "rte" / f"{split}.jsonl", _labelled(_rows("AX-g"), ["entailment", "not_entailment"]))
    _jsonl(sg / "copa" / f"{split}.jsonl", _copa(copies))
    _jsonl(sg / "multirc" / f"{split}.jsonl", _multirc(copies))
    _jsonl(sg / "record" / f"{split}.jsonl", _record(copies))
  shutil.copy(FIXTURES / "superglue" / "AX-b.jsonl", sg / "rte" / "AX-b.jsonl")
  shutil.copy(FIXTURES / "superglue" / "AX-g.jsonl", sg / "rte" / "AX-g.jsonl")
  for directory, files, sample in (
      ("ner/conll2003", ("train.txt", "valid.txt", "test.txt"), "conll2003_sample.txt"),
      ("ner/wnut17", ("train.conll", "dev.conll", "test.conll"), "wnut17_sample.conll"),
      ("ner/conll2004", ("train.txt", "dev.txt", "test.txt"), "conll2004_sample.txt"),
      ("ner/ontonotes", ("train.conll", "dev.conll", "test.conll"), "ontonotes_sample.conll"),
      ("srl/conll2005", ("train.txt", "dev.txt", "test_wsj.txt", "test_brown.txt"), "srl/conll2005_sample.txt"),
      ("srl/conll2012", ("train.txt", "dev.txt", "test.txt"), "srl/conll2012_sample.txt")):
    for name in files:
      _conll(root / directory / name, FIXTURES / sample, 2 * copies)
  _squad(root / "squad" / "v1.1" / "train-v1.1.json", False, copies)
  _squad(root / "squad" / "v1.1" / "dev-v1.1.json", False, 24 + copies)  # squad_v1_dev_split: 24 + copies articles.
  for name in ("train-v2.0.json", "dev-v2.0.json"):
    _squad(root / "squad" / "v2.0" / name, True, copies)
  names = [f"{split}/{file}" for _, _, file in MRQA_IN_DOMAIN for split in ("train", "dev")]
  for relative in names + [f"dev/{file}" for _, _, file in MRQA_OUT_OF_DOMAIN]:
    path = root / "mrqa" / f"{relative}.jsonl.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
      f.write((FIXTURES / "mrqa_sample.jsonl").read_bytes())
  return root
