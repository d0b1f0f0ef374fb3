"""peft's PrefixTuning on SST-2 under the bench protocol of `scripts/bench.py recipe`, for comparison.

The issue-17 setting, in PyTorch: the packaged all-MiniLM-L6-v2 as BertForSequenceClassification,
PrefixTuningConfig(task_type=SEQ_CLS, num_virtual_tokens=20) (text positions from P, the pooler, no prefix
dropout), AdamW at a constant lr 1e-2 without weight decay and gradients clipped to norm 1 (the Hugging Face
Trainer's defaults), batch 32 reshuffled every epoch, max length 64, 626 steps. As the recipe part does, it
trains on train[:-1000] of the shipped 10k subsample, scores train[-1000:] after epoch 1 and at the end, and
the 872 validation sentences once at the end. Each seed's record is appended to
results/peft_recipe_reference.json (rendered by scripts/make_results_md.py, section 5) as it finishes.

Needs torch, transformers and peft (not project dependencies), e.g. the venv of scripts/make_peft_goldens.py:

  /work/venv-peft/bin/python scripts/peft_recipe_reference.py --model_dir MINILM_DIR [--seeds 0 1 2]
"""
import argparse
import gzip
import json
import os
import pathlib
import sys
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
REPO = pathlib.Path(__file__).resolve().parents[1]
STEPS, BATCH, MAX_LENGTH, P, LR, HELD_OUT = 626, 32, 64, 20, 1e-2, 1000


def read_split(name: str):
  with gzip.open(REPO / "tasks" / "data" / "glue" / "sst2" / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1:]
  return [r[0] for r in rows], np.array([int(r[1]) for r in rows])


def accuracy(torch, model, tok, texts, labels) -> float:
  model.eval()
  correct = 0
  with torch.no_grad():
    for i in range(0, len(texts), 128):
      batch = tok(texts[i:i + 128], truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
      correct += int((model(**batch).logits.argmax(-1).numpy() == labels[i:i + 128]).sum())
  model.train()
  return 100.0 * correct / len(texts)


def run_seed(torch, transformers, peft, model_dir, seed):
  texts, labels = read_split("train")
  fit, held = (texts[:-HELD_OUT], labels[:-HELD_OUT]), (texts[-HELD_OUT:], labels[-HELD_OUT:])
  valid = read_split("dev")
  torch.manual_seed(seed)
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  base = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
  model = peft.get_peft_model(base, peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P))
  optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR, weight_decay=0.0)
  rng, order, curve, started = np.random.default_rng(seed), [], [], time.time()
  steps_per_epoch = -(-len(fit[0]) // BATCH)
  model.train()
  for step in range(1, STEPS + 1):
    if not order:
      perm = rng.permutation(len(fit[0]))
      order = [perm[i:i + BATCH] for i in range(0, len(perm), BATCH)]
    index = order.pop(0)
    batch = tok([fit[0][i] for i in index], truncation=True, max_length=MAX_LENGTH, padding=True,
                return_tensors="pt")
    loss = model(**batch, labels=torch.from_numpy(fit[1][index])).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    optimizer.step()
    optimizer.zero_grad()
    if step in (steps_per_epoch, STEPS):
      curve.append([step, accuracy(torch, model, tok, *held)])
      print(f"seed {seed} step {step}: held-out {curve[-1][1]:.2f}", flush=True)
  return {"seed": seed, "steps": STEPS, "held_out_curve": curve, "held_out": curve[-1][1],
          "validation": accuracy(torch, model, tok, *valid), "wall_seconds": time.time() - started}


def main():
  import peft
  import torch
  import transformers

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True, help="the packaged all-MiniLM-L6-v2 directory")
  parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
  parser.add_argument("--out", default="results/peft_recipe_reference.json")
  args = parser.parse_args()
  torch.set_num_threads(2)
  out = REPO / args.out
  record = json.loads(out.read_text()) if out.exists() else {"runs": []}
  argv = [a.replace(args.model_dir, "MINILM_DIR") for a in sys.argv[1:]]  # not this machine's path
  record.update({"command": " ".join(["python", "scripts/peft_recipe_reference.py", *argv]),
                 "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                              "peft": peft.__version__},
                 "setting": {"prompt_length": P, "batch_size": BATCH, "max_length": MAX_LENGTH, "learning_rate": LR,
                             "schedule": "constant", "weight_decay": 0.0, "max_grad_norm": 1.0,
                             "train_split": f"train[:-{HELD_OUT}]", "held_out_split": f"train[-{HELD_OUT}:]"}})
  for seed in args.seeds:
    run = run_seed(torch, transformers, peft, pathlib.Path(args.model_dir), seed)
    record["runs"] = [r for r in record["runs"] if r["seed"] != seed] + [run]
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"seed {seed}: validation {run['validation']:.2f} in {run['wall_seconds']:.0f}s", flush=True)


if __name__ == "__main__":
  main()
