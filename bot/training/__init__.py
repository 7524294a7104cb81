"""Training and measuring the reader: SQuAD files, training data, the resumable training loop, evaluation.

Nothing in `bot.core`, `bot.store` or `bot.sources` imports this package; it needs the `train` extra only to
build a reader from the base encoder.
"""
