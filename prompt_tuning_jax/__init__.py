"""prompt_tuning_jax: parameter-efficient prompt tuning for frozen JAX/Flax backbones.

Shape notation used in every docstring:
  B batch, T tokens, H hidden size, P prompt length, L layers, N attention heads,
  D head dim (H = N * D), C classes, F intermediate (MLP) size, V vocabulary.

Layout:
  models/      one file per backbone architecture, plus its checkpoint loader.
  prompts/     prompt modules; they return prompts, `combine` functions attach them.
  tasks/       seqio task registry, sources and preprocessors.
  tokenizers   WordPiece as a seqio Vocabulary.
  vocabularies the backbones' vocabularies as explicit, cached values (WordPiece, T5 SentencePiece).
  data         numpy batching with length buckets and exact resume.
  trainable    the one regex pattern that decides what trains, is saved, is restored.
  train_step   the pure, jitted train / eval steps.
  trainer      the loop: logging, evaluation, checkpoints, export.
  train        the t5x-style command line.
"""

__version__ = "0.1.0"
