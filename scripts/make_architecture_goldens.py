"""Generate tiny random checkpoints of other architectures, and transformers' outputs on them.

Each model is random (seeded), saved by transformers' own `save_pretrained` (config.json +
model.safetensors, as people's checkpoints are), and run in eval mode (float32) on a padded batch:

  tests/goldens/electra_tiny/      ElectraForPreTraining (embedding_size 16 != hidden 32: the projection)
  tests/goldens/distilbert_tiny/   DistilBertForMaskedLM (DistilBERT's own config keys and weight names)
  tests/goldens/t5_tied_tiny/      T5ForConditionalGeneration, T5 1.0 style: ReLU MLP, output layer tied to
                                   the shared embedding, decoder output scaled by 1/sqrt(d_model)
  tests/goldens/architectures.npz  inputs and outputs: {electra,distilbert}_{input_ids,attention_mask,
                                   token_type_ids,last_hidden_state}; t5_{encoder_input_tokens,
                                   decoder_input_tokens,decoder_target_tokens,logits}
  tests/goldens/architectures.json library versions and sizes

The goldens are committed; torch and transformers are needed only to regenerate them:

  python -m venv /work/venv-peft && /work/venv-peft/bin/pip install torch transformers safetensors numpy
  /work/venv-peft/bin/python scripts/make_architecture_goldens.py --out_dir tests/goldens
"""
import argparse
import json
import os
import pathlib

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub

VOCAB = 96
LENGTHS = (11, 4, 7, 1)  # real tokens per row; the rest is padding


def padded_batch(rng, lengths, vocab, pad=0):
  """ids [B, T] in 1..vocab-1 on the real positions, `pad` after them; mask [B, T]."""
  t = max(lengths)
  mask = (np.arange(t)[None] < np.array(lengths)[:, None]).astype(np.int64)
  ids = np.where(mask, rng.integers(1, vocab, (len(lengths), t)), pad)
  return ids.astype(np.int64), mask


def encoder_goldens(torch, model, base, rng, prefix, with_types):
  ids, mask = padded_batch(rng, LENGTHS, VOCAB)
  types = (np.arange(ids.shape[1])[None] >= 3).astype(np.int64) * mask if with_types else np.zeros_like(ids)
  feed = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
  if with_types:
    feed["token_type_ids"] = torch.from_numpy(types)
  with torch.no_grad():
    hidden = base(**feed).last_hidden_state.numpy().astype(np.float32)
  return {f"{prefix}_input_ids": ids.astype(np.int32), f"{prefix}_attention_mask": mask.astype(np.int32),
          f"{prefix}_token_type_ids": types.astype(np.int32), f"{prefix}_last_hidden_state": hidden}


def main():
  import torch
  import transformers

  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out_dir", default="tests/goldens")
  args = parser.parse_args()
  out = pathlib.Path(args.out_dir)
  rng = np.random.default_rng(0)
  arrays = {}

  torch.manual_seed(0)
  electra = transformers.ElectraForPreTraining(transformers.ElectraConfig(
      vocab_size=VOCAB, embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
      intermediate_size=64, max_position_embeddings=64)).eval()
  electra.save_pretrained(out / "electra_tiny")
  arrays |= encoder_goldens(torch, electra, electra.electra, rng, "electra", with_types=True)

  torch.manual_seed(1)
  distilbert = transformers.DistilBertForMaskedLM(transformers.DistilBertConfig(
      vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64)).eval()
  distilbert.save_pretrained(out / "distilbert_tiny")
  arrays |= encoder_goldens(torch, distilbert, distilbert.distilbert, rng, "distilbert", with_types=False)

  torch.manual_seed(2)
  t5 = transformers.T5ForConditionalGeneration(transformers.T5Config(
      vocab_size=VOCAB, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2, num_decoder_layers=2,
      feed_forward_proj="relu", tie_word_embeddings=True, decoder_start_token_id=0)).eval()
  with torch.no_grad():  # Random init leaves tiny logits; widen the embedding so the scale matters.
    t5.shared.weight.mul_(8.0)
  t5.save_pretrained(out / "t5_tied_tiny")
  enc, enc_mask = padded_batch(rng, LENGTHS, VOCAB)
  targets, _ = padded_batch(rng, (5, 3, 5, 2), VOCAB)
  dec = np.concatenate([np.zeros_like(targets[:, :1]), targets[:, :-1]], axis=1)
  with torch.no_grad():
    logits = t5(input_ids=torch.from_numpy(enc), attention_mask=torch.from_numpy(enc_mask),
                decoder_input_ids=torch.from_numpy(dec),
                decoder_attention_mask=torch.from_numpy((targets > 0).astype(np.int64))).logits.numpy()
  arrays |= {"t5_encoder_input_tokens": enc.astype(np.int32), "t5_decoder_input_tokens": dec.astype(np.int32),
             "t5_decoder_target_tokens": targets.astype(np.int32), "t5_logits": logits.astype(np.float32)}

  np.savez_compressed(out / "architectures.npz", **arrays)
  meta = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
          "lengths": LENGTHS, "models": ["electra_tiny", "distilbert_tiny", "t5_tied_tiny"]}
  (out / "architectures.json").write_text(json.dumps(meta, indent=1) + "\n")
  for name in meta["models"]:
    print(name, sorted(p.name for p in (out / name).iterdir()),
          sum(p.stat().st_size for p in (out / name).iterdir()), "bytes")
  print("t5 logits scale", float(np.abs(logits).max()))


if __name__ == "__main__":
  main()
