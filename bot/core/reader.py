"""The extractive reader: find answer spans in passages with a question-answering model (no pipeline needed).

transformers 5 has no question-answering pipeline, so this module tokenises with doc stride, runs
`AutoModelForQuestionAnswering` once over all windows of all passages, and decodes spans itself.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

import numpy as np

from bot.core.reader_config import DTYPES, ReaderConfig
from bot.core.records import Span
from bot.errors import ReaderError

__all__ = ["Reader", "ReaderConfig", "ReaderOptions", "SpanCandidate", "decode_spans", "DTYPES", "MAX_QUESTION_TOKENS"]

logger = logging.getLogger(__name__)

# A question keeps at most its first 64 tokens (the reader and the training data both cut it there).
MAX_QUESTION_TOKENS = 64
N_BEST_PER_SIDE = 20


@dataclass(frozen=True)
class SpanCandidate:
    """A span in token positions of one window, before it is mapped to characters."""

    start_token: int
    end_token: int
    score: float  # p(start) * p(end) under the window's softmax, [CLS] ("no answer") included
    logit: float  # start_logit + end_logit


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def decode_spans(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    context_mask: np.ndarray,
    *,
    max_answer_tokens: int,
    top_n: int = 5,
) -> tuple[list[SpanCandidate], float]:
    """Best answer spans of one window, and the window's probability of "no answer".

    Spans lie wholly inside the context (`context_mask`), with start <= end < start + max_answer_tokens.
    Scores are probabilities under one softmax over the context positions plus position 0 ([CLS]), so a model
    trained with unanswerable examples lowers every span's score when it would rather abstain.

    :param start_logits: shape (seq_len,)
    :param end_logits: shape (seq_len,)
    :param context_mask: shape (seq_len,), True where the token belongs to the context
    :returns: (candidates best first, no-answer probability)
    """
    if max_answer_tokens <= 0:
        raise ValueError(f"max_answer_tokens must be positive, got {max_answer_tokens}")
    allowed = context_mask.copy()
    allowed[0] = True  # [CLS] stands for "no answer"
    start = np.where(allowed, start_logits, -np.inf).astype(np.float64)
    end = np.where(allowed, end_logits, -np.inf).astype(np.float64)
    p_start, p_end = _softmax(start), _softmax(end)
    null_probability = float(p_start[0] * p_end[0])

    context_positions = np.flatnonzero(context_mask)
    if context_positions.size == 0:
        return [], null_probability
    n_best = min(N_BEST_PER_SIDE, context_positions.size)
    best_starts = context_positions[np.argsort(-start[context_positions])[:n_best]]
    best_ends = context_positions[np.argsort(-end[context_positions])[:n_best]]
    # (n_best, n_best) grid of start/end pairs; keep only well-formed, short enough spans
    s_grid, e_grid = np.meshgrid(best_starts, best_ends, indexing="ij")
    valid = (e_grid >= s_grid) & (e_grid - s_grid < max_answer_tokens)
    scores = np.where(valid, p_start[s_grid] * p_end[e_grid], -1.0)
    order = np.argsort(-scores, axis=None)[:top_n]
    candidates = []
    for flat in order:
        i, j = np.unravel_index(flat, scores.shape)
        if scores[i, j] < 0:
            break
        s, e = int(s_grid[i, j]), int(e_grid[i, j])
        candidates.append(SpanCandidate(s, e, float(scores[i, j]), float(start[s] + end[e])))
    return candidates, null_probability


class ReaderOptions(TypedDict, total=False):
    """`ReaderConfig`'s fields other than the model, as keyword arguments of `Reader(...)`."""

    max_length: int
    doc_stride: int
    max_answer_tokens: int
    dtype: str
    threads: int | None
    device: str


class Reader:
    """Read passages with an extractive QA model and return answer spans with character offsets.

        reader = Reader.from_config(ReaderConfig("models/minilm-squad-reader"))
        spans = reader.run("Who founded the club?", ["The club was founded by Ada Park in 2019."])
        spans[0].text  # 'Ada Park'

    `Reader("models/minilm-squad-reader", max_length=256, dtype="int8")` builds the same `ReaderConfig` from
    keyword arguments; defaults and checks are `ReaderConfig`'s.

    :param model: a `ReaderConfig`, or the local directory (or Hugging Face id) of an extractive QA checkpoint.
    :param batch_size: windows per forward pass.
    :param options: the other `ReaderConfig` fields (max_length, doc_stride, max_answer_tokens, dtype, threads).
    :raises ValueError: when an option is out of range (see `ReaderConfig`).
    """

    def __init__(
        self, model: str | Path | ReaderConfig, *, batch_size: int = 32, **options: Unpack[ReaderOptions]
    ) -> None:
        if isinstance(model, ReaderConfig):
            if options:
                raise TypeError(f"give either a ReaderConfig or options, not both (got {sorted(options)})")
            self.config = model
        else:
            self.config = ReaderConfig(model=str(model), **options)
        self.batch_size = batch_size
        self.model: Any = None  # the loaded QA model (or a stand-in with its call signature, in tests)
        self.tokenizer: Any = None  # its fast tokenizer

    @classmethod
    def from_config(cls, config: ReaderConfig, *, batch_size: int = 32) -> Reader:
        """The reader `config` describes (not loaded yet)."""
        return cls(config, batch_size=batch_size)

    # The configuration, under the names the reader always had
    @property
    def model_name(self) -> str:
        return self.config.model

    @property
    def max_length(self) -> int:
        return self.config.max_length

    @property
    def doc_stride(self) -> int:
        return self.config.doc_stride

    @property
    def max_answer_tokens(self) -> int:
        return self.config.max_answer_tokens

    @property
    def dtype(self) -> str:
        return self.config.dtype

    @property
    def threads(self) -> int | None:
        return self.config.threads

    @property
    def device(self) -> str:
        return self.config.device

    @property
    def is_loaded(self) -> bool:
        return self.model is not None

    def load(self) -> Reader:
        """Load tokenizer and model once (later calls do nothing). Never downloads for a local directory.

        :raises ReaderError: when the model cannot be found or is not an extractive QA model.
        """
        if self.model is not None:
            return self
        import torch
        from transformers import AutoModelForQuestionAnswering, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # no "Loading weights" bar on the user's terminal

        if self.threads:
            torch.set_num_threads(self.threads)
        local = Path(self.model_name).is_dir()
        if not local and (self.model_name.startswith((".", "/", "~")) or Path(self.model_name).suffix):
            raise ReaderError(
                f"Reader model directory {self.model_name} does not exist. Set QABOT_READER_MODEL "
                "to a folder holding config.json, the weights and tokenizer files."
            )
        started = time.perf_counter()
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model_name, local_files_only=local)
            model = AutoModelForQuestionAnswering.from_pretrained(
                self.model_name, local_files_only=local, dtype=torch.float32
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ReaderError(
                f"Cannot load the reader model {self.model_name}: {exc}".splitlines()[0]
                + " Set QABOT_READER_MODEL to a local extractive-QA model folder."
            ) from exc
        if not tokenizer.is_fast:
            raise ReaderError(f"The tokenizer of {self.model_name} is not a fast tokenizer; span offsets need one.")
        model.eval()
        if self.device != "cpu":
            try:
                model = model.to(self.device)
            except (RuntimeError, AssertionError) as exc:  # torch without CUDA raises AssertionError
                raise ReaderError(f"Cannot put the reader on device {self.device!r}: {exc}".splitlines()[0]) from exc
        if self.dtype == "int8":
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        self.tokenizer, self.model = tokenizer, model
        logger.info(
            "reader loaded model=%s dtype=%s load_ms=%.0f",
            self.model_name,
            self.dtype,
            (time.perf_counter() - started) * 1000,
        )
        return self

    def _trim_question(self, question: str) -> str:
        # A very long question would leave no room for the context; keep its first tokens. The tokenizer also needs
        # more context room per window than doc_stride (else it fails), which short max_lengths make tight.
        room = self.max_length - self.tokenizer.num_special_tokens_to_add(pair=True) - self.doc_stride - 1
        limit = max(1, min(MAX_QUESTION_TOKENS, room))
        encoded = self.tokenizer(question, add_special_tokens=False, return_offsets_mapping=True)
        offsets = encoded["offset_mapping"]
        if len(offsets) <= limit:
            return question
        return question[: offsets[limit - 1][1]]

    def run(self, question: str, contexts: Sequence[str], *, top_n: int = 5) -> list[Span]:
        """Up to `top_n` candidate answers per context, best first by logit: start + end logits compare across
        passages, while `score` (probability within the span's own window) says how sure the reader is.

        Every span satisfies `contexts[span.context_index][span.char_start:span.char_end] == span.text`.
        """
        import torch

        self.load()
        question = self._trim_question(question.strip())
        if not question or not contexts:
            return []
        encoded = self.tokenizer(
            [question] * len(contexts),
            list(contexts),
            truncation="only_second",
            max_length=self.max_length,
            stride=self.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding="longest",
            return_tensors="np",
        )
        window_context = encoded["overflow_to_sample_mapping"]  # (n_windows,)
        offsets = encoded["offset_mapping"]  # (n_windows, seq_len, 2)
        context_masks = np.array([[sid == 1 for sid in encoded.sequence_ids(w)] for w in range(len(window_context))])
        inputs = {
            name: torch.from_numpy(encoded[name])
            for name in ("input_ids", "attention_mask", "token_type_ids")
            if name in encoded
        }
        start_logits, end_logits = self._forward(inputs)  # each (n_windows, seq_len)

        best: dict[tuple[int, int, int], Span] = {}
        for w, context_index in enumerate(window_context.tolist()):
            candidates, _ = decode_spans(
                start_logits[w], end_logits[w], context_masks[w], max_answer_tokens=self.max_answer_tokens, top_n=top_n
            )
            context = contexts[context_index]
            for cand in candidates:
                char_start, char_end = int(offsets[w, cand.start_token, 0]), int(offsets[w, cand.end_token, 1])
                text = context[char_start:char_end]
                if not text.strip():
                    continue
                key = (context_index, char_start, char_end)
                if key not in best or best[key].score < cand.score:  # overlapping windows see the same span
                    null_logit = float(start_logits[w][0] + end_logits[w][0])
                    best[key] = Span(context_index, char_start, char_end, text, cand.score, cand.logit, null_logit)
        kept: list[Span] = []
        per_context: Counter[int] = Counter()
        for span in sorted(best.values(), key=lambda s: (-s.logit, -s.score)):
            if per_context[span.context_index] < max(top_n, 1):
                per_context[span.context_index] += 1
                kept.append(span)
        return kept

    def best(self, question: str, contexts: Sequence[str]) -> Span | None:
        """The span with the highest logit (the rule `compose_answer` applies to confident spans), or None."""
        spans = self.run(question, contexts, top_n=1)
        return spans[0] if spans else None

    def _forward(self, inputs: dict) -> tuple[np.ndarray, np.ndarray]:
        import torch

        starts, ends = [], []
        total = inputs["input_ids"].shape[0]
        device_type = torch.device(self.device).type
        with (
            torch.inference_mode(),
            torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"),
        ):
            for first in range(0, total, self.batch_size):
                batch = {
                    name: tensor[first : first + self.batch_size].to(self.device) for name, tensor in inputs.items()
                }
                try:
                    output = self.model(**batch)
                except RuntimeError as exc:
                    raise ReaderError(f"The reader model failed on a batch: {exc}") from exc
                starts.append(output.start_logits.float().cpu().numpy())
                ends.append(output.end_logits.float().cpu().numpy())
        return np.concatenate(starts), np.concatenate(ends)
