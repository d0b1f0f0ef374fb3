"""Trains the small SentencePiece model the T5 tests and the tiny T5 run use.

  python scripts/make_sentencepiece_model.py   # writes tests/fixtures/t5_tiny_spm.model

A unigram model on the text the project ships (tasks/data/: RTE premises and hypotheses, the
SST-2 sentences) plus the T5 task words (task prefixes, field names, label strings), with T5's
special ids: pad 0, eos 1, unk 2, no bos. seqio.SentencePieceVocabulary appends `--extra_ids`
sentinels after the pieces, so the model has `vocab_size - extra_ids` pieces and the
vocabulary as the model sees it has exactly `vocab_size` ids: 412 + 100 = 512, the tiny T5
fixture's vocabulary (tests/goldens/t5_tiny/config.json). T5's own vocabulary is 32000 + 100,
padded to 32128 in the model.

Training runs single-threaded on a fixed list of sentences, so rerunning it reproduces the
file. The normalizer is 'identity' (whitespace is still collapsed): T5's 'nmt_nfkc' would add a
240 KB character map to a fixture that is otherwise a few kilobytes, and the shipped text
needs no NFKC folding to tokenize.
"""

import argparse
import gzip
import io
import json
from pathlib import Path

import sentencepiece as spm

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tasks" / "data"
# Words every text-to-text example of the shipped tasks contains: keep them whole pieces.
T5_WORDS = ("rte sentence1: sentence2: entailment not_entailment sst2 sentence: positive negative "
            "hypothesis: premise:")


def sentences():
  """The training text: RTE train/validation pairs and SST-2 sentences, in file order."""
  out = []
  for name in ("train", "val"):
    with gzip.open(DATA / "superglue" / "rte" / f"{name}.jsonl.gz", "rt", encoding="utf-8") as f:
      for line in f:
        row = json.loads(line)
        out += [row["premise"], row["hypothesis"]]
  for name in ("train", "dev"):
    with gzip.open(DATA / "glue" / "sst2" / f"{name}.tsv.gz", "rt", encoding="utf-8") as f:
      out += [line.split("\t")[0] for line in list(f)[1:]]
  return out + [T5_WORDS] * 200


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "t5_tiny_spm.model")
  parser.add_argument("--vocab_size", type=int, default=512, help="the model's vocabulary: pieces + extra ids")
  parser.add_argument("--extra_ids", type=int, default=100, help="sentinels seqio appends (T5: 100)")
  args = parser.parse_args()
  model = io.BytesIO()
  spm.SentencePieceTrainer.train(
      sentence_iterator=iter(sentences()), model_writer=model, vocab_size=args.vocab_size - args.extra_ids,
      model_type="unigram", character_coverage=0.9995, normalization_rule_name="identity",
      pad_id=0, eos_id=1, unk_id=2, bos_id=-1, num_threads=1, shuffle_input_sentence=False, input_sentence_size=0, minloglevel=2)
  args.out.parent.mkdir(parents=True, exist_ok=True)
  args.out.write_bytes(model.getvalue())
  processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
  print(f"{args.out}: {args.out.stat().st_size:,} bytes, {processor.get_piece_size()} pieces "
        f"(+ {args.extra_ids} extra ids = {processor.get_piece_size() + args.extra_ids}); "
        f"'not_entailment' -> {processor.encode('not_entailment', out_type=str)}")


if __name__ == "__main__":
  main()
