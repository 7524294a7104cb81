"""A reader whose model is a stand-in: `Reader`'s real tokenising, windows, span decoding and offsets, over logits
that point at one vocabulary word. Deterministic, so tests can assert the exact answer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Unpack

from bot.core.reader import Reader, ReaderConfig, ReaderOptions

__all__ = ["FakeReader", "PointingModel"]


class PointingModel:
    """Stands where the QA model would: start and end logits are 10 on every occurrence of one token, -10 elsewhere.

    model = PointingModel(tokenizer.convert_tokens_to_ids("haddad"))
    output = model(input_ids=ids)  # output.start_logits: (n_windows, seq_len)
    """

    def __init__(self, token_id: int) -> None:
        self.token_id = token_id

    def __call__(self, *, input_ids, **_inputs) -> SimpleNamespace:
        import torch

        logits = torch.where(input_ids == self.token_id, 10.0, -10.0)
        return SimpleNamespace(start_logits=logits, end_logits=logits.clone())


class FakeReader(Reader):
    """A `Reader` that loads the tokenizer of `model` (a real checkpoint folder, e.g. the tiny test model) and
    answers with a `PointingModel` for the word `point_at`.

        reader = FakeReader(tiny_reader_dir, point_at="haddad")
        reader.best("Who founded the club?", ["The club was founded by Noor Haddad."]).text  # 'Haddad'
    """

    def __init__(
        self, model: str | Path | ReaderConfig, *, point_at: str, batch_size: int = 32, **options: Unpack[ReaderOptions]
    ) -> None:
        super().__init__(model, batch_size=batch_size, **options)
        self.point_at = point_at

    def load(self) -> FakeReader:
        if not self.is_loaded:
            super().load()
            self.model = PointingModel(self.tokenizer.convert_tokens_to_ids(self.point_at))
        return self
