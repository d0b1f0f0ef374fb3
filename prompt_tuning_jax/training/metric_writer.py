"""Training metrics to the console, MODEL_DIR/metrics.jsonl and TensorBoard events."""

import json
import os
import time
from pathlib import Path
from typing import Dict, Optional

import tensorflow as tf


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def drop_records_after(path: Path, step: int) -> int:
  """Removes the records of steps after `step` from metrics.jsonl `path` (a resume from checkpoint `step`
  trains and logs them again: no step appears twice); returns how many. A line that is not JSON (cut off
  by a kill) goes too. Rewritten to a temporary name and renamed."""
  path = Path(path)
  if not path.exists():
    return 0
  kept, dropped = [], 0
  for line in path.read_text(encoding="utf-8").splitlines():
    try:
      record_step = json.loads(line).get("step", 0)
    except (ValueError, AttributeError):
      record_step = None
    if record_step is not None and record_step <= step:
      kept.append(line + "\n")
    else:
      dropped += 1
  if dropped:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(kept), encoding="utf-8")
    os.replace(tmp, path)
  return dropped


class MetricWriter:
  """Writes scalars for a split ('train', 'validation') at a step."""

  def __init__(self, model_dir):
    self.model_dir = Path(model_dir)
    self._jsonl = open(self.model_dir / "metrics.jsonl", "a", encoding="utf-8")
    self._tb = {}

  def write(self, split: str, step: int, scalars: Dict[str, float], member: Optional[int] = None) -> None:
    """member: a sweep member's index (training/sweep.py): its records carry "member" and its TensorBoard
    events go under tensorboard/member_<k>/<split>."""
    tag = {} if member is None else {"member": member}
    record = {"split": split, "step": step, **tag, "time": time.time(), **{k: float(v) for k, v in scalars.items()}}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    where = split if member is None else f"member_{member}/{split}"
    if where not in self._tb:
      self._tb[where] = tf.summary.create_file_writer(str(self.model_dir / "tensorboard" / where))
    with self._tb[where].as_default(step=step):
      for k, v in scalars.items():
        tf.summary.scalar(k, float(v))
    self._tb[where].flush()

  def close(self) -> None:
    self._jsonl.close()
    for w in self._tb.values():
      w.close()


class Progress:
  """Console progress: step, loss, accuracy, steps/s, tokens/s, ETA."""

  def __init__(self, first_step: int, total_steps: int):
    self.total = total_steps
    self._step, self._time = first_step, time.perf_counter()

  def report(self, step: int, loss: float, accuracy: float, tokens: float) -> Dict[str, float]:
    now = time.perf_counter()
    steps = max(step - self._step, 1)
    elapsed = max(now - self._time, 1e-9)
    rate = steps / elapsed
    print(f"step {step:>6}/{self.total} | loss {loss:.4f} | acc {accuracy:5.1f}% | {rate:.2f} steps/s | "
          f"{tokens / elapsed:,.0f} tok/s | ETA {format_duration((self.total - step) / rate)}", flush=True)
    self._step, self._time = step, now
    return {"steps_per_second": rate, "tokens_per_second": tokens / elapsed}

  def restart_clock(self, step: int) -> None:
    """Excludes evaluation and checkpoint time from the next rate."""
    self._step, self._time = step, time.perf_counter()
