"""Our models under a real t5x: `python -m t5x.train / t5x.eval / t5x.infer` with the gin files in gin/t5x/.

The one part of the package that imports t5x (and no flaxformer: the backbones are our own modules).
Install t5x beside this package (it is not on PyPI); the rest of the package works without it.

  models.py        t5x models: PromptEncoderDecoderModel (PromptedT5, t5x's loss and decoding) and
                   PromptEncoderModel (EncoderClassifier: P-Tuning v2, BitFit, ...), frozen backbones.
  optim.py         prompt-only optimizers (t5x's Adafactor through MultiOptimizer, AdamW as TrainableOptax),
                   both applying t5x's learning rate, and the
                   logical-axis and Adafactor factor rules for our prompt and head axes.
  features.py      the seqio feature converter of encoder tasks; the tasks a run's DATA_DIR and vocabulary read.
  initializers.py  prompt initializers that read the pretrained embedding from INITIAL_CHECKPOINT_PATH.

Without t5x: `python -m prompt_tuning_jax.convert_checkpoint` (a Hugging Face directory as a checkpoint t5x
restores) and `python -m prompt_tuning_jax.extract_prompt` (a t5x run's prompt into our export format).

Importing it makes our flax modules and prompt initializers bindable from gin by their short names
(T5Config, PromptedT5, InputPrompt, DeepPrompt, ...), as our own trainer does, so gin/t5x/ files include the
gin/models/ size files unchanged.
"""

try:
  import t5x  # pylint: disable=unused-import
except ImportError as e:  # pragma: no cover - depends on the environment
  raise ImportError("prompt_tuning_jax.t5x needs t5x, which is not installed (it is not on PyPI): install t5x "
                    "and its dependencies from https://github.com/google-research/t5x, or use our own trainer, "
                    "python -m prompt_tuning_jax.train.") from e

from prompt_tuning_jax import cli as _cli

_cli.register_configurables()
