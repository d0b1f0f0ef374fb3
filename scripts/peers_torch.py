r"""Train-step timings of the PyTorch peers (peft, transformers) on one batch shape; run by scripts/bench_peers.py.

  <peers venv>/bin/python scripts/peers_torch.py --backbone_dir=DIR --out=FILE [--batch=32 --length=128]

Runs in its own virtualenv (torch CPU, transformers, peft; `make bench-peers` creates .venv-peers) and never imports
this package. For each peer, BertForSequenceClassification is loaded from the same Hugging Face directory as our
backbone (the packaged all-MiniLM-L6-v2), put in train mode (dropout on, as ours), and one AdamW step (zero_grad,
forward with labels, backward, step) on a fixed batch of `batch` x `length` real tokens is timed after warm-up:

  peft_prefix_p20   peft PrefixTuningConfig(num_virtual_tokens=20): key/value prefixes in every layer (P-Tuning v2)
  peft_prompt_p20   peft PromptTuningConfig(num_virtual_tokens=20): 20 input embeddings (Lester et al.)
  hf_finetune       every parameter of the model trains (transformers alone)

A `_bf16` suffix (e.g. peft_prefix_p20_bf16) runs the same step's forward under torch.autocast("cpu", bfloat16),
torch's mixed precision on this CPU's AMX / AVX512-BF16, against our ACTIVATION_DTYPE='bfloat16'.

peft hands the prefixes to the backbone's forward as `past_key_values`. Where a transformers release names that
argument otherwise (`cache`, as some 5.x BERTs do, which peft 0.21 then refuses for prefix tuning), the harness
wraps the BERT forward to accept `past_key_values` and pass it on under the new name, and records that it did
(`adapted_signature`). Each prefix run also checks that the prefix gets a gradient, i.e. that it reached attention.
"""

import argparse
import functools
import inspect
import json
import os
import platform
import statistics
import sys
import time


def adapt_prefix_signature(model) -> bool:
  """Lets `model.bert.forward` take `past_key_values` when it names the argument `cache`; True if adapted."""
  bert_cls = type(model.bert)
  params = inspect.signature(bert_cls.forward).parameters
  if "past_key_values" in params or "cache" not in params:
    return False
  original = bert_cls.forward

  @functools.wraps(original)
  def forward(self, *args, past_key_values=None, **kwargs):
    return original(self, *args, cache=past_key_values, **kwargs)

  forward.__signature__ = inspect.signature(original).replace(parameters=[
      p.replace(name="past_key_values") if p.name == "cache" else p for p in params.values()])
  bert_cls.forward = forward
  return True


def build(method: str, backbone_dir: str):
  """(model, trainable parameters, learning rate, whether the forward signature was adapted)."""
  import peft  # pylint: disable=g-import-not-at-top
  from transformers import AutoModelForSequenceClassification  # pylint: disable=g-import-not-at-top
  model = AutoModelForSequenceClassification.from_pretrained(backbone_dir, num_labels=2)
  adapted = False
  if method == "hf_finetune":
    return model, [p for p in model.parameters()], 2e-5, adapted
  if method == "peft_prefix_p20":
    adapted = adapt_prefix_signature(model)
    config = peft.PrefixTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=20)
  elif method == "peft_prompt_p20":
    config = peft.PromptTuningConfig(task_type=peft.TaskType.SEQ_CLS, num_virtual_tokens=20)
  else:
    raise ValueError(f"unknown peer {method!r}")
  model = peft.get_peft_model(model, config)
  return model, [p for p in model.parameters() if p.requires_grad], 1e-2, adapted


def time_method(method: str, backbone_dir: str, batch: int, length: int, warmup: int, steps: int) -> dict:
  import contextlib  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  base, bf16 = (method[:-len("_bf16")], True) if method.endswith("_bf16") else (method, False)
  model, trained, lr, adapted = build(base, backbone_dir)
  precision = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
  model.train()
  optimizer = torch.optim.AdamW(trained, lr=lr)
  g = torch.Generator().manual_seed(0)
  ids = torch.randint(1000, 30000, (batch, length), generator=g)
  ids[:, 0], ids[:, -1] = 101, 102
  inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
            "labels": torch.randint(0, 2, (batch,), generator=g)}

  def step():
    optimizer.zero_grad(set_to_none=True)
    with precision():
      loss = model(**inputs).loss
    loss.backward()
    optimizer.step()
    return float(loss)

  for _ in range(warmup):
    loss = step()
  prefix_grad = None
  if base == "peft_prefix_p20":  # the prefix reached attention: its table has a gradient
    grads = [p.grad for n, p in model.named_parameters() if "prompt_encoder" in n]
    prefix_grad = float(sum(g_.abs().sum() for g_ in grads if g_ is not None))
  times = []
  for _ in range(steps):
    started = time.perf_counter()
    loss = step()
    times.append(time.perf_counter() - started)
  return {"method": method, "step_seconds_min": min(times), "step_seconds_median": statistics.median(times),
          "step_seconds": times, "trainable": int(sum(p.numel() for p in trained)), "loss": loss,
          "adapted_signature": adapted, "prefix_gradient_abs_sum": prefix_grad}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--backbone_dir", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--length", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--methods", default="peft_prefix_p20,peft_prompt_p20,hf_finetune")
  args = parser.parse_args(argv)
  import peft  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(os.cpu_count() or 1)
  rows = []
  for method in args.methods.split(","):
    row = time_method(method, args.backbone_dir, args.batch, args.length, args.warmup, args.steps)
    rows.append(row)
    print(f"[peers] {method:<16} step {row['step_seconds_min'] * 1000:8.0f} ms (median "
          f"{row['step_seconds_median'] * 1000:.0f})", flush=True)
  versions = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
              "python": platform.python_version(), "torch_threads": torch.get_num_threads()}
  with open(args.out, "w") as f:
    json.dump({"versions": versions, "methods": rows, "batch": args.batch, "length": args.length}, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
