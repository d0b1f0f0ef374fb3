r"""Prints what an export holds: its metadata, and the vocabulary tokens nearest to each prompt position.

  python -m prompt_tuning_jax.inspect EXPORT [--backbone HF_DIR] [--vocabulary vocab.txt|spm.model] [--top 5]

Lester et al.'s interpretability reading: for each prompt position, the `--top` vocabulary tokens whose
embedding has the highest cosine similarity with it. An input prompt [P, H] lives in the word-embedding
space, so it is compared with the word embeddings. A deep prompt's keys and values live inside attention:
layer 0's are compared with the keys and values each vocabulary token would have in layer 0 (its word,
position-1 and type-0 embeddings through the embedding LayerNorm and layer 0's key / value projections),
where that is meaningful; later layers attend over contextual states that no token has on its own, so they
are not compared. Padding and never-used tokens (`[PAD]`, `[unusedN]`, `<pad>`) are left out.

The backbone is the export's own (its metadata) unless --backbone names another; a BERT-family directory
brings its vocab.txt, a T5 needs --vocabulary (its SentencePiece model). Bad input is one `error:` line
and exit status 2.
"""

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from prompt_tuning_jax import cli

_UNUSED = re.compile(r"^(\[unused\d+\]|\[PAD\]|<pad>)$")


def parse_flags(argv: Sequence[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m prompt_tuning_jax.inspect", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("export", help="an export (.safetensors)")
  parser.add_argument("--backbone", default=None, help="the backbone directory (default: the export's)")
  parser.add_argument("--vocabulary", default=None, help="vocab.txt or a SentencePiece .model (default: the "
                                                          "backbone's vocab.txt)")
  parser.add_argument("--top", type=int, default=5, help="tokens shown per position")
  return parser.parse_args(argv)


def nearest(vectors: np.ndarray, table: np.ndarray, top: int, usable: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  """vectors [P, X], table [V, X], usable [V] bool -> (ids [P, top], cosine similarities [P, top])."""
  unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
  sims = np.where(usable[None], unit(vectors) @ unit(table).T, -np.inf)
  ids = np.argsort(-sims, axis=-1)[:, :top]
  return ids, np.take_along_axis(sims, ids, axis=-1)


def read_tokens(vocabulary: Path) -> List[str]:
  """The token of each id: vocab.txt's lines, or a SentencePiece model's pieces."""
  from prompt_tuning_jax import errors  # pylint: disable=g-import-not-at-top
  if not vocabulary.exists():
    raise errors.MissingFileError(f"vocabulary {vocabulary} does not exist; pass --vocabulary (vocab.txt or a "
                                  "SentencePiece .model).")
  if vocabulary.suffix == ".model":
    import sentencepiece  # pylint: disable=g-import-not-at-top
    model = sentencepiece.SentencePieceProcessor(model_file=str(vocabulary))
    return [model.id_to_piece(i) for i in range(model.get_piece_size())]
  return vocabulary.read_text(encoding="utf-8").splitlines()


def _layer_norm(x, scale, bias, eps):
  mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + bias


def layer0_keys_values(config, params) -> Tuple[np.ndarray, np.ndarray]:
  """The layer-0 keys and values [V, N*D] of every vocabulary token at position 1, token type 0 (bert.py)."""
  emb = params["embeddings"]
  x = emb["word_embeddings"]["embedding"] + emb["position_embeddings"]["embedding"][config.position_id_offset + 1]
  if "token_type_embeddings" in emb:
    x = x + emb["token_type_embeddings"]["embedding"][0]
  x = _layer_norm(x, emb["layer_norm"]["scale"], emb["layer_norm"]["bias"], config.layer_norm_eps)
  if "embeddings_project" in params:
    x = x @ params["embeddings_project"]["kernel"] + params["embeddings_project"]["bias"]
  attention = params["layers_0"]["attention"]
  return tuple(x @ attention[n]["kernel"] + attention[n]["bias"] for n in ("key", "value"))


def comparisons(tensors: Dict[str, np.ndarray], metadata: Dict[str, str], backbone) -> List[Tuple[str, np.ndarray,
                                                                                                  np.ndarray]]:
  """(what, prompt vectors [P, X], vocabulary vectors [V, X]) for each comparison that is meaningful."""
  from prompt_tuning_jax import errors  # pylint: disable=g-import-not-at-top
  config, params = backbone
  if "prompt/prompt" in tensors:
    table = (params["token_embedder"]["embedding"] if "token_embedder" in params else
             params["embeddings"]["word_embeddings"]["embedding"])
    return [("input prompt", tensors["prompt/prompt"], table)]
  if "prompt/prefix" in tensors:
    prefix = tensors["prompt/prefix"]  # [L', 2, P, N, D]
    if "embeddings" not in params or prefix.ndim != 5:
      raise errors.ConfigError("inspect reads the deep prompts of BERT-family encoders ([L, 2, P, N, D]); this "
                               f"export holds prompt/prefix {prefix.shape} for a {type(config).__name__}.")
    if prefix.shape[0] != config.num_hidden_layers:
      return []  # Prompts on some layers only: which row is layer 0 is not recorded.
    keys, values = layer0_keys_values(config, params)
    flat = lambda x: x.reshape(x.shape[0], -1)  # [P, N, D] -> [P, N*D]
    return [("layer 0 keys", flat(prefix[0, 0]), keys), ("layer 0 values", flat(prefix[0, 1]), values)]
  raise errors.CheckpointError(f"the export holds no prompt (tensors {sorted(tensors)}).")


def load_backbone_for(metadata: Dict[str, str], backbone_dir):
  """(config, params) of the export's backbone (or `backbone_dir`): a BERT-family encoder or a T5."""
  # pylint: disable=g-import-not-at-top
  from prompt_tuning_jax.models import bert_checkpoint, t5_checkpoint
  # pylint: enable=g-import-not-at-top
  path = bert_checkpoint.resolve_backbone_dir(backbone_dir or metadata.get("backbone"))
  config_file = path / "config.json"
  if config_file.exists() and json.loads(config_file.read_text()).get("model_type") in ("t5", "mt5"):
    return path, t5_checkpoint.load_t5(path)
  return path, bert_checkpoint.load_backbone(path)


def report(args: argparse.Namespace) -> str:
  """Prints (and returns) the metadata and each position's nearest tokens."""
  from prompt_tuning_jax import export  # pylint: disable=g-import-not-at-top
  tensors, metadata = export.load_export(args.export)
  lines = [f"{args.export}"] + [f"  {k}: {v}" for k, v in sorted(metadata.items())]
  lines += [f"  tensor {k}: {tuple(v.shape)}" for k, v in sorted(tensors.items())]
  path, backbone = load_backbone_for(metadata, args.backbone)
  tokens = read_tokens(Path(args.vocabulary) if args.vocabulary else path / "vocab.txt")
  found = comparisons(tensors, metadata, backbone)
  if not found:
    lines.append("deep prompts on some layers only: which row is layer 0 is not recorded, so no comparison is shown")
  for what, vectors, table in found:
    usable = np.array([i < len(tokens) and not _UNUSED.match(tokens[i]) for i in range(table.shape[0])])
    ids, sims = nearest(np.asarray(vectors, np.float32), np.asarray(table, np.float32), args.top, usable)
    lines.append(f"{what}: nearest vocabulary tokens by cosine similarity")
    for p in range(ids.shape[0]):
      lines.append(f"  {p:3d}: " + "  ".join(f"{tokens[i]} ({s:.2f})" for i, s in zip(ids[p], sims[p])))
  if found and "prompt/prefix" in tensors:
    lines.append("layers 1 and up: not compared (they attend over contextual states no single token has)")
  text = "\n".join(lines)
  print(text)
  return text


def main(argv: Sequence[str] = None) -> int:
  return cli.run_cli(report, argv, parse_flags=parse_flags)


if __name__ == "__main__":
  sys.exit(main())
