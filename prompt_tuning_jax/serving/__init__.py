"""Serving many tasks' exports over one frozen backbone: exports.py (what can be served, and the banked model),
inputs.py (request rows -> examples), engine.py (compiled forward per group), answers.py (outputs -> answers),
bank.py (the served tasks), batcher.py (dynamic batching), app.py (the HTTP API); serve.py starts it."""
