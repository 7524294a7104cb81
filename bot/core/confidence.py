"""How sure the bot is that an answer is right: evidence about each candidate, and a calibrated probability.

The reader's span score only says how the span compares with the rest of its own passage. Whether the answer is
*right* also shows in evidence the pipeline already holds: the margin over "no answer", how far the runner-up is,
how many passages and articles agree, how well its passage ranked, whether the answer's type fits the question word
and how many of the question's words its sentence holds. `Calibrator` turns that evidence into the probability that
the answer is right (a logistic regression fitted offline by `qa-bot calibrate`, applied here with numpy), and says
which of three outcomes it earns: confident, unsure (a hedged reply) or nothing.

    calibrator = Calibrator.load("models/minilm-squad-reader/calibration.json")
    evidence = gather_evidence(question, passages, spans, sentence_of=lambda passage, span: "...")
    calibrator.outcome(calibrator.probability(evidence[0].features))  # "confident", "unsure" or "none"
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.core.records import Passage, Span
from bot.errors import ConfigError

__all__ = [
    "FEATURES",
    "Evidence",
    "Calibrator",
    "gather_evidence",
    "question_kind",
    "type_fit",
    "normalise_answer",
    "content_words",
    "CALIBRATION_FILE_NAME",
    "DEFAULT_ANSWER_THRESHOLD",
    "DEFAULT_HEDGE_THRESHOLD",
    "MAX_CANDIDATES",
]

logger = logging.getLogger(__name__)

CALIBRATION_FILE_NAME = "calibration.json"  # looked for beside the reader model
# Raw span-score thresholds used when no calibration can be read (the v1 reader's calibrated default and half of it).
DEFAULT_ANSWER_THRESHOLD = 0.45
DEFAULT_HEDGE_THRESHOLD = 0.2
MAX_CANDIDATES = 5  # distinct answers weighed per question
MARGIN_CAP = 10.0  # logit margins are clipped to +-this (a lone candidate has no runner-up)

FEATURES = (
    "log_score",
    "null_margin",
    "runner_up_margin",
    "logit_gap",
    "candidate_rank",
    "agree_passages",
    "agree_articles",
    "passage_rank",
    "bm25_relative",
    "answer_words",
    "answer_in_question",
    "type_fit",
    "sentence_overlap",
    "passage_overlap",
)

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an the of in on at to for from by with and or is are was were be been being did do does what which who whom "
    "whose when where why how that this these those it its as into than then there their they he she his her him "
    "not no yes can could would should will may might has have had about after before during over under".split()
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|"
    r"hundred|thousand|million|billion|trillion|dozen|half|several|few)\b",
    re.IGNORECASE,
)
_TIME = re.compile(
    r"\d|\b(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\b|\b(monday|tuesday|wednesday|"
    r"thursday|friday|saturday|sunday|today|yesterday|century|centuries|decade|year|years|ago|spring|"
    r"summer|autumn|fall|winter|morning|evening|night|era|age|period)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Evidence:
    """One candidate answer with what speaks for it; `features` follow `FEATURES`."""

    span: Span
    passage: Passage
    features: dict[str, float]


def normalise_answer(text: str) -> str:
    """The form in which two answers count as the same: lower case, words only, no leading article."""
    words = _WORD.findall(text.lower())
    if words and words[0] in ("a", "an", "the"):
        words = words[1:]
    return " ".join(words)


def content_words(text: str) -> set[str]:
    """Lower-cased words of `text` without stop words (what makes a passage or sentence look relevant)."""
    return {word for word in _WORD.findall(text.lower()) if word not in _STOP}


def question_kind(question: str) -> str:
    """The kind of answer a question asks for: "count", "when", "who", "where" or "other".

    >>> [question_kind(q) for q in ("How many ships?", "In what year?", "Who runs it?", "Where is it?", "Why?")]
    ['count', 'when', 'who', 'where', 'other']
    """
    q = question.lower()
    if re.search(r"\bhow (many|much|long|far|old|large|big|tall)\b|\bwhat (percentage|number|amount)\b", q):
        return "count"
    if re.search(r"\bwhen\b|\b(what|which) (year|month|day|date|time|century|decade|period|era)\b", q):
        return "when"
    if re.search(r"\bwho(m|se)?\b", q):
        return "who"
    if re.search(r"\bwhere\b|\b(what|which) (city|country|state|place|town|region|continent)\b", q):
        return "where"
    return "other"


def type_fit(kind: str, answer: str) -> float:
    """+1 when the answer looks like what the question asks for, -1 when it does not, 0 when the question says little.

    >>> type_fit("when", "in 1858"), type_fit("who", "in 1858"), type_fit("other", "anything")
    (1.0, -1.0, 0.0)
    """
    if kind == "count":
        return 1.0 if _NUMBER.search(answer) else -1.0
    if kind == "when":
        return 1.0 if _TIME.search(answer) else -1.0
    if kind in ("who", "where"):
        named = any(word[:1].isupper() for word in answer.split())
        return 1.0 if named and not re.search(r"\d", answer) else -1.0
    return 0.0


def _overlap(asked: set[str], text: str) -> float:
    return len(asked & content_words(text)) / len(asked) if asked else 0.0


def gather_evidence(
    question: str,
    passages: Sequence[Passage],
    spans: Sequence[Span],
    *,
    sentence_of: Callable[[Passage, Span], str],
    max_candidates: int = MAX_CANDIDATES,
) -> list[Evidence]:
    """Evidence for the best `max_candidates` distinct answers among the reader's spans, best logit first.

    :param passages: retrieved passages, best BM25 first (`span.context_index` indexes them).
    :param sentence_of: the sentence(s) quoted for a span (what the user will read).
    """
    ranked = sorted(spans, key=lambda s: (-s.logit, -s.score))
    if not ranked:
        return []
    asked = content_words(question)
    kind = question_kind(question)
    best_bm25 = min((p.bm25 for p in passages), default=0.0)
    # which passages and articles offer each normalised answer (anywhere in their top spans)
    holders: dict[str, set[int]] = {}
    for span in ranked:
        holders.setdefault(normalise_answer(span.text), set()).add(span.context_index)
    evidence: list[Evidence] = []
    seen: set[str] = set()
    top_logit = ranked[0].logit
    for span in ranked:
        key = normalise_answer(span.text)
        if key in seen or not key:
            continue
        seen.add(key)
        passage = passages[span.context_index]
        rival = next((other.logit for other in ranked if normalise_answer(other.text) != key), None)
        in_passages = holders[key] - {span.context_index}
        in_articles = {passages[i].article.id for i in in_passages} - {passage.article.id}
        features = {
            "log_score": math.log(max(span.score, 1e-6)),
            "null_margin": float(np.clip(span.logit - span.null_logit, -MARGIN_CAP, MARGIN_CAP)),
            "runner_up_margin": MARGIN_CAP
            if rival is None
            else float(np.clip(span.logit - rival, -MARGIN_CAP, MARGIN_CAP)),
            "logit_gap": float(max(span.logit - top_logit, -MARGIN_CAP)),
            "candidate_rank": float(len(evidence)),
            "agree_passages": float(len(in_passages)),
            "agree_articles": float(len(in_articles)),
            "passage_rank": float(span.context_index),
            "bm25_relative": passage.bm25 / best_bm25 if best_bm25 < 0 else 1.0,
            "answer_words": float(len(span.text.split())),
            # an answer made of the question's own words rarely answers it ("Who founded X?" -> "X")
            "answer_in_question": _overlap(content_words(span.text), question),
            "type_fit": type_fit(kind, span.text),
            "sentence_overlap": _overlap(asked, sentence_of(passage, span)),
            "passage_overlap": _overlap(asked, passage.text),
        }
        evidence.append(Evidence(span, passage, features))
        if len(evidence) >= max_candidates:
            break
    return evidence


@dataclass(frozen=True)
class Calibrator:
    """Turns evidence into the probability that an answer is right, and that probability into an outcome.

    Built from a `calibration.json` written by `qa-bot calibrate`; `Calibrator.raw()` is the fallback that uses the
    span score itself with raw-score thresholds.

    :param weights: logistic-regression weights over standardised `FEATURES` (empty: use the raw span score); the
        weighted sum ranks candidates.
    :param scale: the weighted sum of the chosen (best) candidate, times `scale` plus `shift`, is the log-odds that it
        is right: a second fit on the chosen candidates only, since the best of several scores overrates itself.
    :param answer_threshold: at or above it the answer is given ("confident").
    :param hedge_threshold: at or above it (and below the answer threshold) the bot hedges ("unsure").
    """

    weights: tuple[float, ...] = ()
    bias: float = 0.0
    means: tuple[float, ...] = ()
    scales: tuple[float, ...] = ()
    answer_threshold: float = DEFAULT_ANSWER_THRESHOLD
    hedge_threshold: float = DEFAULT_HEDGE_THRESHOLD
    source: str = "raw span score"
    scale: float = 1.0  # Platt scaling of the candidate score for the candidate the bot picks (its best)
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.weights and not len(self.weights) == len(self.means) == len(self.scales) == len(FEATURES):
            raise ConfigError(f"A calibration needs {len(FEATURES)} weights, means and scales ({', '.join(FEATURES)}).")
        if not 0.0 <= self.hedge_threshold <= self.answer_threshold <= 1.0:
            raise ConfigError(
                "Calibration thresholds must satisfy 0 <= hedge threshold <= answer threshold <= 1, got "
                f"{self.hedge_threshold} and {self.answer_threshold}."
            )

    @property
    def is_calibrated(self) -> bool:
        return bool(self.weights)

    @classmethod
    def raw(
        cls, *, answer_threshold: float = DEFAULT_ANSWER_THRESHOLD, hedge_threshold: float | None = None
    ) -> Calibrator:
        """No calibration: the confidence is the span score, compared with raw-score thresholds."""
        hedge = min(DEFAULT_HEDGE_THRESHOLD, answer_threshold) if hedge_threshold is None else hedge_threshold
        return cls(answer_threshold=answer_threshold, hedge_threshold=min(hedge, answer_threshold))

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str = "calibration") -> Calibrator:
        """:raises ConfigError: when the mapping is not a calibration for these features."""
        try:
            if list(data["features"]) != list(FEATURES):
                raise ConfigError(f"{source} was fitted on other features ({', '.join(data['features'])}).")
            return cls(
                weights=tuple(float(w) for w in data["weights"]),
                bias=float(data["bias"]),
                means=tuple(float(m) for m in data["means"]),
                scales=tuple(float(s) for s in data["scales"]),
                answer_threshold=float(data["answer_threshold"]),
                hedge_threshold=float(data["hedge_threshold"]),
                source=source,
                scale=float(data.get("platt", [1.0, 0.0])[0]),
                shift=float(data.get("platt", [1.0, 0.0])[1]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source} is not a calibration file (bad or missing {exc}).") from exc

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        """:raises ConfigError: when the file is missing, not JSON or not a calibration."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"Cannot read the calibration file {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path} is not a calibration file (expected a JSON object).")
        return cls.from_dict(data, source=str(path))

    @classmethod
    def fallback_thresholds(cls, path: str | Path) -> tuple[float, float] | None:
        """The raw-score thresholds a calibration file records for when its model is not used, if readable."""
        try:
            fallback = json.loads(Path(path).read_text(encoding="utf-8"))["fallback"]
            return float(fallback["answer_threshold"]), float(fallback["hedge_threshold"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def candidate_score(self, features: Mapping[str, float]) -> float:
        """How strongly the evidence speaks for a candidate (log-odds of the ranking fit); candidates compare by it."""
        x = (np.array([features[name] for name in FEATURES]) - np.array(self.means)) / np.array(self.scales)
        return self.bias + float(np.dot(np.array(self.weights), x))

    def probability(self, features: Mapping[str, float]) -> float:
        """The estimated probability that the candidate with these features is right (the raw score without a fit)."""
        if not self.weights:
            return math.exp(features["log_score"])
        z = self.scale * self.candidate_score(features) + self.shift
        return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0

    def outcome(self, confidence: float) -> str:
        """ "confident", "unsure" or "none" for a confidence from `probability`."""
        if confidence >= self.answer_threshold:
            return "confident"
        if confidence >= self.hedge_threshold:
            return "unsure"
        return "none"

    def with_thresholds(self, *, answer: float | None = None, hedge: float | None = None) -> Calibrator:
        """The same calibration with thresholds set by the user (settings); a hedge above the answer is lowered."""
        answer = self.answer_threshold if answer is None else answer
        hedge = self.hedge_threshold if hedge is None else hedge
        return dataclasses.replace(self, answer_threshold=answer, hedge_threshold=min(hedge, answer))
