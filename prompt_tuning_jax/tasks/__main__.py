r"""Discovery of the task registry.

  python -m prompt_tuning_jax.tasks --list
      every registered task (family, splits, metrics, data) and mixture.
  python -m prompt_tuning_jax.tasks --show NAME [--split validation] [--data_dir DIR] [--max_length N]
      the first preprocessed example of NAME's split, as text and as features.

Data errors (missing files, a malformed line) exit with status 2 and one `error:` line.
"""

import argparse
import os
import sys
from typing import List, Optional, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # pylint: disable=g-import-not-at-top
import seqio  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

from prompt_tuning_jax import errors, tasks
from prompt_tuning_jax.tasks import families  # pylint: disable=g-import-not-at-top
from prompt_tuning_jax.tasks import mixtures  # pylint: disable=g-import-not-at-top
from prompt_tuning_jax.tasks.labels import IGNORE_LABEL  # pylint: disable=g-import-not-at-top


def _metric_names(task: seqio.Task) -> List[str]:
  return [getattr(fn, "func", fn).__name__ for fn in task.metric_fns]


def _data(name: str) -> str:
  source = tasks.info(name).source
  files = ", ".join(f"{split}: {path}" for split, path in source.files.items())
  return (f"TFDS {source.tfds_name} when prepared, else " if source.tfds_name else "") + f"DATA_DIR files {files}"


def list_tasks() -> str:
  """The registry as text: encoder tasks by family, other seqio tasks, then mixtures."""
  lines = ["Encoder tasks (family; splits; metric_fns, * = selection metric; data):"]
  for family in families.FAMILIES:
    for name in sorted(n for n, info in tasks.INFO.items() if info.family == family):
      task, info = tasks.get_task(name), tasks.info(name)
      lines.append(f"  {name:<26} {family:<21} {', '.join(task.splits):<24} "
                   f"{', '.join(_metric_names(task))} (*{info.metric})")
      lines.append(f"  {'':<26} {_data(name)}")
  others = sorted(set(seqio.TaskRegistry.names()) - set(tasks.INFO))
  if others:
    lines.append("Other seqio tasks (not trained by the encoder trainer):")
    for name in others:
      task = seqio.get_mixture_or_task(name)
      lines.append(f"  {name:<26} {'text-to-text':<21} {', '.join(task.splits):<24} {', '.join(_metric_names(task))}")
  lines.append("Mixtures (tasks; splits; selection metric):")
  for name in sorted(mixtures.MIXTURES):
    names = tasks.task_names(name)
    splits = sorted({s for n in names for s in tasks.info(n).source.splits})
    own = {tasks.info(n).metric for n in names}
    metric = own.pop() if len(own) == 1 else "score (mean of each task's own)"
    lines.append(f"  {name:<26} {', '.join(names)}")
    lines.append(f"  {'':<26} {', '.join(splits)}; {metric}")
  return "\n".join(lines)


def _pieces(vocab, ids: Sequence[int]) -> List[str]:
  return [vocab.decode([int(i)]) if i else "[PAD]" for i in ids]


def _text(name: str, example: dict, vocab) -> List[str]:
  """The example as a reader sees it, per family."""
  if name not in tasks.INFO:
    return [f"{k}: {vocab.decode(v.tolist()) if hasattr(v, 'tolist') and v.dtype.kind == 'i' else v}"
            for k, v in example.items() if k in ("inputs", "targets")]
  info = tasks.info(name)
  labels = info.label_names
  if info.family == families.CLASSIFICATION:
    return [f"text:  {' '.join(_pieces(vocab, example['inputs']))}", f"label: {labels[int(example['label'])]}"]
  if info.family == families.MULTIPLE_CHOICE:
    return [f"choice {k}: {' '.join(p for p in _pieces(vocab, row) if p != '[PAD]')}"
            for k, row in enumerate(example["inputs"])] + [f"label: {labels[int(example['label'])]}"]
  if info.family == families.TOKEN_CLASSIFICATION:
    tagged = [f"{piece}/{labels[label]}" if label != IGNORE_LABEL else piece
              for piece, label in zip(_pieces(vocab, example["inputs"]), example["labels"])]
    return [f"tokens: {' '.join(tagged)}", f"word tags: {' '.join(t.decode() for t in example['tags'])}"]
  context, offsets = example["context"].decode(), example["offsets"]
  start, end = int(example["start_position"]), int(example["end_position"])
  answer = context[offsets[start][0]:offsets[end][1]] if start else "(not in this window: [CLS])"
  return [f"window: {' '.join(_pieces(vocab, example['inputs']))}", f"labelled answer: {answer}",
          f"gold answers: {[a.decode() for a in example['answers']]}"]


def _feature(value) -> str:
  value = np.asarray(value)
  if value.dtype.kind in "SO":
    flat = [v.decode() if isinstance(v, bytes) else str(v) for v in value.reshape(-1)[:8]]
    text = repr(flat if value.ndim else flat[0])
    return (text[:100] + "...") if len(text) > 100 else text
  shown = np.array2string(value.reshape(-1)[:24], max_line_width=100, threshold=24)
  return f"{value.dtype}{list(value.shape)} {shown}{' ...' if value.size > 24 else ''}"


def show(name: str, split: Optional[str], data_dir: Optional[str], max_length: Optional[int]) -> str:
  """The first preprocessed example of `name`'s split as text, then its features."""
  task = tasks.get_task(name, data_dir=data_dir)
  split = split or ("validation" if "validation" in task.splits else task.splits[0])
  if max_length is None:
    span = name in tasks.INFO and tasks.info(name).family == families.SPAN_EXTRACTION
    max_length = 384 if span else 128
  lengths = {k: max_length for k in task.output_features}
  example = next(iter(tfds.as_numpy(task.get_dataset(lengths, split=split, shuffle=False, use_cached=False))))
  vocab = task.output_features["inputs"].vocabulary
  lines = [f"{name} ({tasks.info(name).family if name in tasks.INFO else 'text-to-text'}), split {split}, first "
           "example", "as text:"] + [f"  {line}" for line in _text(name, example, vocab)] + ["as features:"]
  lines += [f"  {key}: {_feature(value)}" for key, value in example.items()]
  return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  what = parser.add_mutually_exclusive_group(required=True)
  what.add_argument("--list", action="store_true", help="print every task and mixture")
  what.add_argument("--show", metavar="NAME", help="print NAME's first preprocessed example")
  parser.add_argument("--split", default=None, help="for --show; default validation (or the task's only split)")
  parser.add_argument("--data_dir", default=None, help="DATA_DIR; default the data shipped in tasks/data")
  parser.add_argument("--max_length", type=int, default=None, help="TASK_FEATURE_LENGTHS['inputs']; default 128 "
                      "(384 for QA)")
  args = parser.parse_args(argv)
  try:
    print(list_tasks() if args.list else show(args.show, args.split, args.data_dir, args.max_length))
  except (errors.UserError, tf.errors.OpError) as e:  # Bad input; anything else is a bug and keeps its traceback.
    message = e.message if isinstance(e, tf.errors.OpError) else str(e)
    print(f"error: {message.strip().splitlines()[-1] if message.strip() else type(e).__name__}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
