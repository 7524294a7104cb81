"""SQuAD-format question sets: loading, writing, and the official SQuAD v1.1 exact-match and F1 metric.

A SQuAD file is `{"version", "data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"?}]}]}]}`, plain JSON or gzip-compressed (`.gz`).
"""

from __future__ import annotations

import collections
import gzip
import json
import logging
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import DatasetError

__all__ = [
    "DatasetError",
    "SquadAnswer",
    "SquadQuestion",
    "read_squad_json",
    "write_squad_json",
    "squad_questions",
    "load_squad",
    "normalize_answer",
    "exact_match",
    "f1_score",
    "best_scores",
    "squad_metrics",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SquadAnswer:
    """One gold answer: `context[answer_start:answer_start + len(text)] == text` in a well-formed file."""

    text: str
    answer_start: int

    @property
    def answer_end(self) -> int:
        return self.answer_start + len(self.text)


@dataclass(frozen=True)
class SquadQuestion:
    """One question with the paragraph it was asked about.

    :param article_index: position of the article in the file (articles are the unit held out for validation).
    :param paragraph_index: position of the paragraph inside its article.
    :param answers: gold answers; empty when `is_impossible`.
    """

    article_index: int
    article_title: str
    paragraph_index: int
    context: str
    question_id: str
    question: str
    answers: tuple[SquadAnswer, ...]
    is_impossible: bool = False
    kind: str | None = None  # for a held-out "no answer" question: which negative it is (`negative_kind`)

    @property
    def gold_texts(self) -> list[str]:
        """What the metric compares against: the answer texts, or `[""]` for an unanswerable question."""
        return [answer.text for answer in self.answers] or [""]


# ----------------------------------------------------------------------------------------------------------
# Reading and writing files


def read_squad_json(path: str | Path) -> dict:
    """Read a SQuAD file (plain or `.gz`) into its JSON object, checking the top-level layout.

    :raises DatasetError: when the file is missing, is not JSON, or has no `data` list of articles.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"No SQuAD file at {path}. Give the path of a SQuAD-format .json or .json.gz file.")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                payload = json.load(handle)
        else:
            with path.open(encoding="utf-8") as handle:
                payload = json.load(handle)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DatasetError(f"Could not read {path}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        raise DatasetError(f'{path} is not in SQuAD format: expected an object with a "data" list of articles.')
    return payload


def write_squad_json(path: str | Path, articles: Sequence[Mapping], *, version: str = "1.1") -> Path:
    """Write articles (SQuAD `data` entries) as a SQuAD file; `.gz` paths are gzip-compressed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": version, "data": list(articles)}
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt", encoding="utf-8") as handle:
        json.dump(payload, handle, ensure_ascii=False)
    return path


def squad_questions(articles: Iterable[Mapping], *, source: str = "SQuAD data") -> list[SquadQuestion]:
    """Flatten SQuAD `data` entries into one `SquadQuestion` per question, in file order.

    :raises DatasetError: naming the first article/paragraph/question that lacks a required field.
    """
    questions: list[SquadQuestion] = []
    for article_index, article in enumerate(articles):
        title = str(article.get("title", f"article {article_index}")) if isinstance(article, Mapping) else ""
        try:
            for paragraph_index, paragraph in enumerate(article["paragraphs"]):
                context = paragraph["context"]
                for qa in paragraph["qas"]:
                    is_impossible = bool(qa.get("is_impossible", False))
                    answers = (
                        ()
                        if is_impossible
                        else tuple(
                            SquadAnswer(text=answer["text"], answer_start=int(answer["answer_start"]))
                            for answer in qa.get("answers", [])
                        )
                    )
                    questions.append(
                        SquadQuestion(
                            article_index=article_index,
                            article_title=title,
                            paragraph_index=paragraph_index,
                            context=context,
                            question_id=str(qa["id"]),
                            question=qa["question"],
                            answers=answers,
                            is_impossible=is_impossible or not answers,
                            kind=qa.get("negative_kind"),
                        )
                    )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{source}: article {article_index} ({title!r}) is not in SQuAD format (missing or bad field {exc})."
            ) from exc
    return questions


def load_squad(path: str | Path, *, limit: int | None = None) -> list[SquadQuestion]:
    """Load a SQuAD file (plain or `.gz`) as a flat list of questions.

        questions = load_squad("validation.json")
        questions[0].question, questions[0].gold_texts

    :param limit: keep only the first `limit` questions (None keeps all).
    :raises DatasetError: when the file is missing, unreadable or not in SQuAD layout.
    """
    questions = squad_questions(read_squad_json(path)["data"], source=str(path))
    if not questions:
        raise DatasetError(f"{path} holds no questions.")
    return questions if limit is None else questions[:limit]


# ----------------------------------------------------------------------------------------------------------
# The official SQuAD v1.1 metric (same normalisation and token F1 as the evaluation script)

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, remove punctuation, remove the articles a/an/the and collapse whitespace."""
    text = text.lower()
    text = "".join(char for char in text if char not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    """1.0 when prediction and gold are equal after `normalize_answer`, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1_score(prediction: str, gold: str) -> float:
    """Token-overlap F1 between normalised prediction and gold; two empty answers score 1.0."""
    prediction_tokens = normalize_answer(prediction).split()
    gold_tokens = normalize_answer(gold).split()
    if not prediction_tokens or not gold_tokens:
        # An empty gold means "no answer": only an empty prediction is right.
        return float(prediction_tokens == gold_tokens)
    common = collections.Counter(prediction_tokens) & collections.Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(prediction_tokens)
    recall = overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def best_scores(prediction: str, golds: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of one prediction, each the maximum over the gold answers; `[]` means unanswerable."""
    golds = list(golds) or [""]
    return max(exact_match(prediction, gold) for gold in golds), max(f1_score(prediction, gold) for gold in golds)


def squad_metrics(predictions: Mapping[str, str], questions: Sequence[SquadQuestion]) -> dict[str, float]:
    """Exact match and F1 in percent over `questions`, as the official script reports them.

    A question with no prediction counts as answered with "" (wrong unless it is unanswerable).

        squad_metrics({"q1": "Denver Broncos"}, questions)  # {"exact_match": 100.0, "f1": 100.0, "count": 1}
    """
    if not questions:
        return {"exact_match": 0.0, "f1": 0.0, "count": 0}
    total_em = total_f1 = 0.0
    for question in questions:
        em, f1 = best_scores(predictions.get(question.question_id, ""), question.gold_texts)
        total_em += em
        total_f1 += f1
    return {
        "exact_match": 100.0 * total_em / len(questions),
        "f1": 100.0 * total_f1 / len(questions),
        "count": len(questions),
    }
