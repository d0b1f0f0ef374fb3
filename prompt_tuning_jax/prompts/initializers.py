"""Initializers for input prompts: fn(rng, shape [P, H], word_embeddings [V, H]) -> [P, H].

The backbone's word embedding table is passed in, so vocabulary-based inits use the
real (loaded) embeddings. `class_labels` and `from_text` tokenize with the backbone's
vocabulary, an explicit argument (a seqio Vocabulary, vocabularies.py): WordPiece for
encoders, SentencePiece for T5. In gin it comes from the VOCABULARY macro, which
gin/runs/train.gin binds to the encoder backbone's vocab.txt (from INITIAL_CHECKPOINT_PATH)
and gin/models/t5_1_1_prompt.gin to T5's SentencePiece model (SENTENCEPIECE_MODEL,
EXTRA_IDS), both files binding `class_labels.vocabulary` and `from_text.vocabulary` to it;
the trainers build their tasks' vocabulary from the same values. Without a vocabulary these
initializers fail when built, rather than tokenizing with some other backbone's.
"""

from typing import Callable, Optional, Sequence

import gin
import jax
import jax.numpy as jnp
import numpy as np

from prompt_tuning_jax import errors

PromptInit = Callable[[jax.Array, Sequence[int], jax.Array], jax.Array]


def _require_vocabulary(vocabulary, initializer: str) -> None:
  if vocabulary is None:
    raise errors.ConfigError(f"{initializer} tokenizes with the backbone's vocabulary, but none was given: pass "
                             f"vocabulary= (gin: {initializer}.vocabulary = %VOCABULARY, as gin/runs/train.gin and "
                             "gin/models/t5_1_1_prompt.gin bind it).")


def _tokenize(vocabulary, text: str) -> list:
  ids = vocabulary.encode(text)
  if not ids:
    raise errors.ConfigError(f"{text!r} tokenizes to nothing; cannot initialize a prompt from it.")
  return ids


@gin.configurable
def uniform(scale: float = 0.5) -> PromptInit:
  """U(-scale, scale), Lester et al.'s random init."""
  return lambda rng, shape, embeddings: jax.random.uniform(rng, shape, jnp.float32, -scale, scale)


@gin.configurable
def sampled_vocab(population: int = 5000) -> PromptInit:
  """Rows drawn from the first `population` vocabulary embeddings (without replacement when it can)."""

  def init(rng, shape, embeddings):
    n = min(population, embeddings.shape[0])
    rows = jax.random.choice(rng, n, (shape[0],), replace=n < shape[0])
    return jnp.asarray(embeddings)[rows]

  return init


@gin.configurable
def class_labels(labels: Sequence[str] = gin.REQUIRED, fallback: Optional[PromptInit] = None,
                 vocabulary=None) -> PromptInit:
  """Row i is the mean embedding of label i's pieces in `vocabulary`; the other rows come from `fallback`."""
  _require_vocabulary(vocabulary, "class_labels")
  fallback = fallback or sampled_vocab()

  def init(rng, shape, embeddings):
    if len(labels) > shape[0]:
      raise errors.ConfigError(f"{len(labels)} class labels do not fit a prompt of length {shape[0]}.")
    rows = fallback(rng, shape, embeddings)
    for i, label in enumerate(labels):
      rows = rows.at[i].set(jnp.asarray(embeddings)[np.array(_tokenize(vocabulary, label))].mean(0))
    return rows

  return init


@gin.configurable
def from_text(text: str = gin.REQUIRED, fallback: Optional[PromptInit] = None, vocabulary=None) -> PromptInit:
  """The embeddings of `text`'s pieces in `vocabulary` (cut to P; further rows from `fallback`)."""
  _require_vocabulary(vocabulary, "from_text")
  fallback = fallback or sampled_vocab()

  def init(rng, shape, embeddings):
    ids = np.array(_tokenize(vocabulary, text))[:shape[0]]
    return fallback(rng, shape, embeddings).at[:len(ids)].set(jnp.asarray(embeddings)[ids])

  return init


@gin.configurable
def from_file(path: str = gin.REQUIRED, key: str = "prompt/prompt") -> PromptInit:
  """A saved prompt: a .npy array or an exported .safetensors file (tensor `key`)."""

  def init(rng, shape, embeddings):
    del rng, embeddings
    from prompt_tuning_jax import export  # pylint: disable=g-import-not-at-top
    if str(path).endswith(".npy"):
      value = export.load_npy(path)
    else:
      tensors, _ = export.load_export(path)
      if key not in tensors:
        raise errors.CheckpointError(f"{path} has no tensor {key!r} (it has {sorted(tensors)}).")
      value = tensors[key]
    if tuple(value.shape) != tuple(shape):
      raise errors.CheckpointError(f"prompt file {path} holds shape {tuple(value.shape)} but this backbone and "
                                   f"PROMPT_LENGTH need {tuple(shape)} [P, H]. Use a prompt trained for this "
                                   "backbone or set PROMPT_LENGTH to match.")
    return jnp.asarray(value, jnp.float32)

  return init
