"""Generate the tiny T5 1.1 parity fixture and its goldens with Hugging Face transformers.

Builds a small randomly initialised T5 1.1 (`T5ForConditionalGeneration`, gated-GELU,
untied output layer) with a fixed seed and writes

  <out_dir>/t5_tiny/config.json          a Hugging Face T5 1.1 config (tie_word_embeddings false)
  <out_dir>/t5_tiny/model.safetensors    its float32 weights, `lm_head.weight` included
  <out_dir>/t5_tiny_goldens.npz          int32 encoder_input_tokens / encoder_mask [B, T],
                                         decoder_input_tokens / decoder_target_tokens /
                                         decoder_mask [B, T'], greedy_ids [B, G]; float32
                                         encoder_states [B, T, H] and logits [B, T', V]

The batch is padded (pad id 0), one encoder input is longer than the relative-position
max distance (128) so every bucket is used, and the weights the default initialisation
leaves at 1 or near 0 (RMSNorm scales, relative-position tables) are drawn at random so
a swapped name cannot pass. `greedy_ids` come from a plain argmax loop that re-runs the
model on the growing decoder input, starting from id 0 and emitting 0 after EOS (id 1).

Note: transformers 5 ties `lm_head` to `shared` when it builds any T5 (its T5Config
forces `tie_word_embeddings=True`); it unties them only when loading a checkpoint that
holds both with different values. The script therefore gives `lm_head` its own
parameter by hand, as a T5 1.1 checkpoint has, and checks that `from_pretrained` on the
written directory reproduces the goldens.

Every output is byte-for-byte reproducible (fixed seed, zip entries without timestamps),
so rerunning the script must leave `git status` clean. torch and transformers are needed
only here; nothing is downloaded:

  HF_HUB_OFFLINE=1 python scripts/make_t5_goldens.py --out_dir tests/goldens
"""

import argparse
import io
import json
import os
import pathlib
import zipfile

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub

SEED = 20240611
CONFIG = {
    "architectures": ["T5ForConditionalGeneration"],
    "d_ff": 128,
    "d_kv": 12,  # N * D = 48 != d_model: catches head reshapes that assume N * D = H.
    "d_model": 64,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "feed_forward_proj": "gated-gelu",
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-06,
    "model_type": "t5",
    "num_decoder_layers": 3,  # != num_layers: catches a decoder built with the encoder's depth.
    "num_heads": 4,
    "num_layers": 2,
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "tie_word_embeddings": False,
    "vocab_size": 512,
}
ENCODER_LENGTHS = (150, 37, 9, 1)  # real tokens per example, the last one is EOS
TARGET_LENGTHS = (24, 7, 1, 15)
GREEDY_STEPS = 10
PAD, EOS = 0, 1


def make_batch(rng):
  """Right-padded encoder inputs and teacher-forcing decoder inputs (start id 0)."""
  b, t, tt = len(ENCODER_LENGTHS), max(ENCODER_LENGTHS), max(TARGET_LENGTHS)
  vocab = CONFIG["vocab_size"]
  enc = np.zeros((b, t), np.int32)
  targets = np.zeros((b, tt), np.int32)
  for i, (n, m) in enumerate(zip(ENCODER_LENGTHS, TARGET_LENGTHS)):
    enc[i, :n] = np.append(rng.integers(2, vocab, n - 1), EOS)
    targets[i, :m] = np.append(rng.integers(2, vocab, m - 1), EOS)
  dec_inputs = np.zeros_like(targets)
  dec_inputs[:, 1:] = targets[:, :-1]
  dec_inputs[targets == PAD] = PAD
  return {
      "encoder_input_tokens": enc,
      "encoder_mask": (enc > 0).astype(np.int32),
      "decoder_input_tokens": dec_inputs,
      "decoder_target_tokens": targets,
      "decoder_mask": (targets > 0).astype(np.int32),
  }


def build_model(torch, transformers):
  """The random T5 1.1 with an untied lm_head and randomised norm scales and position tables."""
  torch.manual_seed(SEED)
  config = transformers.T5Config(**{k: v for k, v in CONFIG.items() if k != "architectures"})
  model = transformers.T5ForConditionalGeneration(config)
  with torch.no_grad():
    lm_head = torch.randn(CONFIG["vocab_size"], CONFIG["d_model"]) * CONFIG["d_model"]**-0.5
    model.lm_head.weight = torch.nn.Parameter(lm_head)
    for name, param in model.named_parameters():
      if name.endswith("layer_norm.weight"):
        param.uniform_(0.5, 1.5)
      elif name.endswith("relative_attention_bias.weight"):
        param.normal_(0.0, 0.5)
  assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
  return model.eval()


def run(torch, model, batch):
  """(encoder states [B, T, H], logits [B, T', V]) for the teacher-forced batch."""
  feed = {k: torch.from_numpy(v.astype(np.int64)) for k, v in batch.items()}
  with torch.no_grad():
    out = model(input_ids=feed["encoder_input_tokens"], attention_mask=feed["encoder_mask"],
                decoder_input_ids=feed["decoder_input_tokens"], decoder_attention_mask=feed["decoder_mask"],
                use_cache=False)
  return out.encoder_last_hidden_state.numpy(), out.logits.numpy()


def greedy(torch, model, batch):
  """[B, G] argmax ids, re-running the decoder on the growing prefix; 0 after EOS."""
  ids = torch.from_numpy(batch["encoder_input_tokens"].astype(np.int64))
  mask = torch.from_numpy(batch["encoder_mask"].astype(np.int64))
  tokens = torch.zeros((ids.shape[0], 1), dtype=torch.int64)
  done = torch.zeros(ids.shape[0], dtype=torch.bool)
  with torch.no_grad():
    for _ in range(GREEDY_STEPS):
      logits = model(input_ids=ids, attention_mask=mask, decoder_input_ids=tokens, use_cache=False).logits
      nxt = torch.where(done, PAD, logits[:, -1].argmax(-1))
      done |= nxt == EOS
      tokens = torch.cat([tokens, nxt[:, None]], dim=1)
  return tokens[:, 1:].numpy().astype(np.int32)


def save_npz(path, arrays):
  """np.savez_compressed without the per-entry timestamps, so reruns are byte-identical."""
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
    for name in sorted(arrays):
      buf = io.BytesIO()
      np.lib.format.write_array(buf, np.ascontiguousarray(arrays[name]), allow_pickle=False)
      info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
      info.compress_type = zipfile.ZIP_DEFLATED
      zf.writestr(info, buf.getvalue())


def save_fixture(model_dir, model):
  from safetensors.torch import save_file  # pylint: disable=g-import-not-at-top
  model_dir.mkdir(parents=True, exist_ok=True)
  # The per-stack embed_tokens are the same tensor as `shared`; checkpoints carry `shared`.
  tensors = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
             if not k.endswith("embed_tokens.weight")}
  save_file(tensors, str(model_dir / "model.safetensors"), metadata={"format": "pt"})
  (model_dir / "config.json").write_text(json.dumps(CONFIG, indent=2, sort_keys=True) + "\n")


def main():
  import torch  # pylint: disable=g-import-not-at-top
  import transformers  # pylint: disable=g-import-not-at-top

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out_dir", default="tests/goldens")
  args = parser.parse_args()
  out_dir = pathlib.Path(args.out_dir)
  torch.set_num_threads(1)  # bit-stable float32 sums

  model = build_model(torch, transformers)
  batch = make_batch(np.random.default_rng(SEED))
  encoder_states, logits = run(torch, model, batch)
  arrays = dict(batch, encoder_states=encoder_states.astype(np.float32), logits=logits.astype(np.float32),
                greedy_ids=greedy(torch, model, batch))

  # Sanity: real positions do not depend on batch padding.
  n, m = ENCODER_LENGTHS[1], TARGET_LENGTHS[1]
  alone = {k: v[1:2, :n] if k.startswith("encoder") else v[1:2, :m] for k, v in batch.items()}
  alone_states, alone_logits = run(torch, model, alone)
  diff = max(np.abs(alone_states[0] - encoder_states[1, :n]).max(), np.abs(alone_logits[0] - logits[1, :m]).max())
  print(f"example 1 alone vs padded batch: max |diff| = {diff:.3g}")
  assert diff < 1e-5, diff

  save_fixture(out_dir / "t5_tiny", model)
  save_npz(out_dir / "t5_tiny_goldens.npz", arrays)

  # Sanity: transformers reads the directory back untied and reproduces the goldens.
  reloaded = transformers.T5ForConditionalGeneration.from_pretrained(out_dir / "t5_tiny", dtype=torch.float32).eval()
  assert reloaded.lm_head.weight.data_ptr() != reloaded.shared.weight.data_ptr(), "lm_head was tied on reload"
  re_states, re_logits = run(torch, reloaded, batch)
  assert np.array_equal(re_states, encoder_states) and np.array_equal(re_logits, logits)

  lengths = {k: v.sum(1).tolist() for k, v in batch.items() if k.endswith("mask")}
  print(f"transformers {transformers.__version__}, torch {torch.__version__}; lengths {lengths}")
  print(f"greedy ids:\n{arrays['greedy_ids']}")
  for path in sorted((out_dir / "t5_tiny").iterdir()) + [out_dir / "t5_tiny_goldens.npz"]:
    print(f"wrote {path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
  main()
