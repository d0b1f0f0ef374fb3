"""Prompt initializers that read the pretrained embedding table from the checkpoint t5x restores.

t5x initialises the whole model at random first and restores INITIAL_CHECKPOINT_PATH over it afterwards,
so a vocabulary-based prompt initializer (sampled_vocab, class_labels, from_text) would see the random
table. `from_checkpoint_embedding(initializer, checkpoint_path)` gives `initializer` the checkpoint's table
instead (read once; a Hugging Face directory or a T5X checkpoint, Orbax or legacy layout). The table enters
the initialisation program as a constant, so it costs one embedding's size of host memory once.
"""

from typing import Callable, Optional

import jax.numpy as jnp

from prompt_tuning_jax.models import t5x_checkpoint

T5_EMBEDDING = "token_embedder/embedding"


def from_checkpoint_embedding(initializer: Callable, checkpoint_path: Optional[str],
                              embedding_name: str = T5_EMBEDDING):
  """`initializer` (rng, shape, embeddings) -> rows, called with the embedding `embedding_name` of
  `checkpoint_path` (T5: token_embedder/embedding; BERT: embeddings/word_embeddings/embedding). With no
  checkpoint (eval and infer, which restore the trained prompt over it) the module's table is used."""
  table = {}

  def init(rng, shape, embeddings):
    if checkpoint_path is None:
      return initializer(rng, shape, embeddings)
    if "value" not in table:
      table["value"] = t5x_checkpoint.read_parameters(checkpoint_path, [embedding_name])[embedding_name]
    return initializer(rng, shape, jnp.asarray(table["value"]))

  return init
