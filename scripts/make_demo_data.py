"""Writes the data the demo and gin/rte_deep_prompt.gin need into tasks/data/.

  python scripts/make_demo_data.py --source ../shared/data

RTE train/validation and SST-2 validation are copied whole; SST-2 training is a seeded
random subsample (default 10,000 of 67,349 rows). Everything is gzip-compressed.
"""

import argparse
import gzip
import random
import shutil
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tasks" / "data"
WHOLE = ("superglue/rte/train.jsonl", "superglue/rte/val.jsonl", "glue/sst2/dev.tsv")


def gzip_lines(lines, dest: Path) -> None:
  dest.parent.mkdir(parents=True, exist_ok=True)
  with gzip.GzipFile(dest, "wb", compresslevel=9, mtime=0) as f:  # mtime=0: reproducible bytes.
    f.write("".join(lines).encode("utf-8"))


def main():
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--source", type=Path, default=Path("../shared/data"))
  parser.add_argument("--sst2_train_size", type=int, default=10_000)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()
  for rel in WHOLE:
    gzip_lines((args.source / rel).read_text(encoding="utf-8").splitlines(keepends=True), OUT / (rel + ".gz"))
  header, *rows = (args.source / "glue/sst2/train.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
  rows = random.Random(args.seed).sample(rows, args.sst2_train_size)
  gzip_lines([header] + rows, OUT / "glue/sst2/train.tsv.gz")
  for p in sorted(OUT.rglob("*.gz")):
    print(f"{p.relative_to(OUT.parent.parent)}: {p.stat().st_size:,} bytes")


if __name__ == "__main__":
  main()
