"""The gin entry points that put a backbone, its tasks and the training core together: `train` (encoders),
`train_seq2seq`, `evaluate_prompt` and `infer_prompt` (T5). The command line (cli.py) runs them."""
