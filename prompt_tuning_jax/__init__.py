"""prompt_tuning_jax: parameter-efficient prompt tuning for frozen JAX/Flax backbones.

Shape notation used in every docstring:
  B batch, T tokens (T' decoder tokens), G decoded tokens, H hidden size (BERT: hidden_size; T5: d_model),
  P prompt length, L layers, N attention heads, D head dim, C classes, F intermediate (MLP) size,
  V vocabulary, K ensemble members or choices.
  BERT-family encoders have H = N * D. T5 1.1 does not: its attention width N * D (num_heads * d_kv) is set
  apart from d_model (T5 1.1 small: H = 512, N * D = 6 * 64 = 384), so key/value prefixes are
  [.., P, N, D] and input prompts [P, H] have different widths.

Layers (README's layout table; tests/test_layout.py checks the import rules):
  models/    the model contract (base.py), its encoder and encoder-decoder implementations, and one file
             per backbone architecture with its checkpoint loader.
  prompts/   prompt modules; they return prompts, separate functions combine them with the inputs.
  data/      vocabularies, tokenizers and batching (length buckets, one batch order, exact resume).
  tasks/     seqio registrations, sources, preprocessors, metrics, scoring and label constants.
  training/  one `fit` for any model of the contract: steps, loop, evaluator, checkpoints, partitioning.
  recipes/   the gin entry points (train, train_seq2seq, evaluate_prompt, infer_prompt).
  cli        t5x-style flags and gin; train, eval and infer are its `python -m` shims; convert_checkpoint
             (Hugging Face -> T5X checkpoint) and extract_prompt (t5x run -> export) use its one-line errors
             without gin.
  t5x/       the adapter for a real t5x (`python -m t5x.train` with gin/t5x/); the only module importing t5x.
"""

__version__ = "0.1.0"
