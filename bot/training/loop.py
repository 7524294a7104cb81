"""Fine-tune an encoder into the project's extractive reader on SQuAD-format data: CPU-friendly and resumable.

The run holds out whole articles for validation (written to `validation.json` in the output folder), adds
"no answer" examples (a question paired with another paragraph of its article, target [CLS]), trains with
length-bucketed batches, checkpoints every few hundred steps and on SIGINT/SIGTERM, and finally saves an fp16
`AutoModelForQuestionAnswering` with its tokenizer, ready for `Reader`. The data steps (split, examples, features,
batches) are in `bot.training.data`; this module holds the loop, checkpointing and export.

    result = train_reader(train_path="train-v1.1.json.gz", out_dir="runs/reader", epochs=2)
    result.steps, result.out_dir  # run the same call again after an interruption to resume
"""

from __future__ import annotations

import collections
import gc
import hashlib
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bot.errors import ConfigError, DatasetError, TrainingError
from bot.training.data import (
    Features,
    Recipe,
    batch_tensors,
    build_features,
    build_window_examples,
    default_base_dir,
    epoch_batches,
    hard_negative_articles,
    split_articles,
)
from bot.training.squad import read_squad_json, squad_questions, write_squad_json

__all__ = ["TrainingError", "TrainResult", "train_reader", "export_checkpoint", "default_run_dir"]

logger = logging.getLogger(__name__)

WARMUP_RATIO = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
CHECKPOINT_DIR = "checkpoint"
VALIDATION_FILE = "validation.json"
SUMMARY_FILE = "training.json"
BEST_DIR = "best"  # the fp16 model of the best held-out evaluation so far


def default_run_dir() -> Path:
    """Where a run lives when `--out` is not given: the user's cache folder, outside any work tree."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "qa-bot" / "runs" / "reader"


def _file_digest(paths) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _model_digest(model_dir: Path) -> str:
    """A hash of the model folder's config and weights: the same base under another path resumes."""
    files = [model_dir / "config.json"] + sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin"))
    return _file_digest(files)


@dataclass(frozen=True)
class TrainResult:
    """What a call to `train_reader` did; `interrupted` runs resume with the same call."""

    out_dir: Path
    steps: int
    total_steps: int
    epochs: float
    features: int
    curve: tuple[dict, ...]
    best_step: int | None
    examples: int
    negatives: int
    validation_questions: int
    final_loss: float | None
    seconds: float
    interrupted: bool


# ----------------------------------------------------------------------------------------------------------
# Training loop


class _StopRequest:
    """SIGINT/SIGTERM handler: the first signal asks the loop to checkpoint and stop; a second one aborts."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        logger.warning("stop requested signal=%s; saving a checkpoint after this step", signal.Signals(signum).name)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _bf16_supported() -> bool:
    # Without native bf16 (AVX512-BF16/AMX) oneDNN emulates it: measured 25x slower than fp32 on an AVX2 EPYC.
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _training_device(device: str | None) -> str:
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise ConfigError(f"Unknown device {device!r}: {exc}".splitlines()[0]) from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"Device {device!r} asked for, but torch sees no CUDA GPU here; use --device cpu.")
    return device


def _release_free_memory() -> None:
    # glibc keeps the heap that parsing the JSON grew (GBs); hand it back so a run of hours holds only what it uses
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _format_eta(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _linear_schedule(warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor


def _prepare_data(
    *,
    train_path: Path,
    out_dir: Path,
    tokenizer,
    fingerprint: dict,
    validation_articles: int,
    recipe: Recipe,
    limit_questions: int | None,
    max_length: int,
    doc_stride: int,
    seed: int,
) -> tuple[Features, dict]:
    """Features for training (cached in the checkpoint folder) and a summary of the data; writes validation.json."""
    cache = out_dir / CHECKPOINT_DIR / "features.npz"
    summary_path = out_dir / CHECKPOINT_DIR / "data.json"
    if cache.is_file() and summary_path.is_file():
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("fingerprint") == fingerprint:
            logger.info("features loaded from cache path=%s", cache)
            return Features.load(cache), summary
    started = time.perf_counter()
    articles = read_squad_json(train_path)["data"]
    training, validation = split_articles(articles, validation_articles=validation_articles, seed=seed)
    validation = hard_negative_articles(validation, recipe=recipe, seed=seed)
    write_squad_json(out_dir / VALIDATION_FILE, validation, version="2.0")
    questions = squad_questions(training, source=str(train_path))
    if limit_questions is not None:
        questions = questions[:limit_questions]
    examples = build_window_examples(questions, recipe=recipe, seed=seed)
    del articles, training
    features = build_features(tokenizer, examples, max_length=max_length, doc_stride=doc_stride)
    summary = {
        "fingerprint": fingerprint,
        "questions": len(questions),
        "examples": len(examples),
        "negatives": sum(example.is_negative for example in examples),
        "examples_by_kind": dict(sorted(collections.Counter(example.kind for example in examples).items())),
        "features": len(features),
        "cls_target_features": int((features.start_positions == 0).sum()),
        "mean_length": float(features.lengths.mean()),
        "validation_articles": len(validation),
        "validation_questions": len(squad_questions(validation, source="validation")),
        "validation_negatives": sum(q.is_impossible for q in squad_questions(validation, source="validation")),
        "training_titles": sorted({question.article_title for question in questions}),
    }
    del examples, questions
    (out_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    features.save(cache)
    summary_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    logger.info(
        "features built features=%d examples=%d negatives=%d mean_length=%.1f seconds=%.0f",
        len(features),
        summary["examples"],
        summary["negatives"],
        summary["mean_length"],
        time.perf_counter() - started,
    )
    return features, summary


def _save_checkpoint(
    path: Path,
    *,
    model,
    optimizer,
    scheduler,
    step: int,
    epoch: int,
    order: list[np.ndarray] | None,
    fingerprint: dict,
    recent_loss: float | None,
    curve: list[dict],
) -> None:
    import torch

    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "epoch": epoch,
        "fingerprint": fingerprint,
        "recent_loss": recent_loss,
        "curve": curve,
        "order": np.concatenate(order) if order else np.zeros(0, dtype=np.int64),
        "order_sizes": np.array([len(batch) for batch in order or []], dtype=np.int64),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    temporary = path.with_suffix(".tmp")
    try:
        torch.save(state, temporary)
        temporary.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    except (OSError, RuntimeError) as exc:  # torch reports a full disk as RuntimeError from its zip writer
        temporary.unlink(missing_ok=True)
        raise TrainingError(
            f"Could not write the checkpoint {path} ({str(exc).splitlines()[0]}); "
            "the previous checkpoint is kept. Free some disk space and run the same command."
        ) from exc
    logger.info("checkpoint saved step=%d path=%s", step, path)


def _save_final_model(model, tokenizer, out_dir: Path) -> None:
    import copy
    import shutil

    import torch

    # written beside, then swapped in: a full disk never leaves a half-written model where a good one was
    temporary = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        half = copy.deepcopy(model).to("cpu", torch.float16)
        half.save_pretrained(temporary)
        tokenizer.save_pretrained(temporary)
        del half
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in temporary.iterdir():
            item.replace(out_dir / item.name)
    except (OSError, RuntimeError) as exc:
        raise TrainingError(f"Could not save the model in {out_dir}: {str(exc).splitlines()[0]}") from exc
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def export_checkpoint(out_dir: str | Path, dest_dir: str | Path) -> int:
    """Save the model of a run's latest checkpoint (e.g. of a run still going) as an fp16 reader in `dest_dir`.

        step = export_checkpoint("runs/reader", "runs/reader-latest")
        Reader("runs/reader-latest").load()

    :returns: the training step of the exported weights.
    :raises TrainingError: when `out_dir` holds no checkpoint.
    """
    import torch
    from transformers import AutoConfig, AutoModelForQuestionAnswering, AutoTokenizer

    path = Path(out_dir) / CHECKPOINT_DIR / "state.pt"
    if not path.is_file():
        raise TrainingError(f"No checkpoint at {path}. Start a run with: qa-bot train-reader --out {out_dir} ...")
    state = torch.load(path, weights_only=False, map_location="cpu")
    base_dir = state["fingerprint"]["base_dir"]
    model = AutoModelForQuestionAnswering.from_config(AutoConfig.from_pretrained(base_dir))
    model.load_state_dict(state["model"])
    _save_final_model(model, AutoTokenizer.from_pretrained(base_dir), Path(dest_dir))
    logger.info("checkpoint exported step=%d dest=%s", state["step"], dest_dir)
    return int(state["step"])


# ----------------------------------------------------------------------------------------------------------
# Options and the run


@dataclass(frozen=True)
class TrainOptions:
    """What a training run is made of; everything but `epochs`, `max_steps` and the intervals must match to resume.

    :param epochs: passes over the training features, fractions allowed; the learning rate decays to zero at the
        end. It may change when resuming: the schedule is then recomputed.
    :param max_length: tokens per window; `doc_stride`: tokens shared by consecutive windows of a long passage.
    :param validation_articles: whole articles held out (chosen with `seed`), written to `validation.json` with
        tagged "no answer" questions (`Recipe`).
    :param recipe: the mix of training examples.
    :param max_steps: stop after this many optimizer steps in total (the schedule still spans `epochs`).
    :param limit_questions: train on the first N training questions only (smoke runs).
    :param checkpoint_every: save resumable state every N steps (and on SIGINT/SIGTERM).
    :param eval_every: evaluate on the first `eval_questions` held-out questions every N steps (and at the start),
        keep the best model in `best/`, and stop once `patience` evaluations in a row do not beat the best
        has-answer F1 (a plateau). None: no evaluation during training.
    """

    epochs: float = 1.0
    max_length: int = 256
    doc_stride: int = 128
    batch_size: int = 32
    lr: float = 5e-5
    validation_articles: int = 40
    recipe: Recipe = field(default_factory=Recipe)
    max_steps: int | None = None
    limit_questions: int | None = None
    seed: int = 13
    checkpoint_every: int = 200
    log_every: int = 10
    eval_every: int | None = None
    eval_questions: int = 3000
    patience: int = 2

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "log_every", "lr", "eval_questions", "patience"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
        for name in ("max_steps", "eval_every", "limit_questions"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}.")

    def data_fingerprint(self) -> dict:
        """What the features depend on (their cache is reused when these match)."""
        return {
            "max_length": self.max_length,
            "doc_stride": self.doc_stride,
            "validation_articles": self.validation_articles,
            "recipe": asdict(self.recipe),
            "limit_questions": self.limit_questions,
            "seed": self.seed,
        }


def _evaluate(model, tokenizer, *, out_dir: Path, step: int, questions: int, device: str = "cpu") -> dict:
    """Held-out scores of the current weights, read exactly as the shipped fp16 model would be."""
    from bot.training.evaluation import evaluate_reader

    scratch = out_dir / "eval-model"
    _save_final_model(model, tokenizer, scratch)
    report = evaluate_reader(out_dir / VALIDATION_FILE, model_dir=scratch, limit=questions, device=device)
    model.train()
    point = {
        "step": step,
        "exact_match": report.exact_match,
        "f1": report.f1,
        "has_answer_exact_match": report.has_answer_exact_match,
        "has_answer_f1": report.has_answer_f1,
        "no_answer_accuracy": report.no_answer_accuracy,
        "no_answer_accuracy_by_kind": report.no_answer_accuracy_by_kind,
        "best_f1": report.best_f1,
        "best_f1_threshold": report.best_f1_threshold,
        "questions": report.count,
    }
    logger.info(
        "held-out step=%d has_answer_em=%.2f has_answer_f1=%.2f no_answer_acc=%s best_f1=%.2f",
        step,
        report.has_answer_exact_match or 0.0,
        report.has_answer_f1 or 0.0,
        f"{report.no_answer_accuracy:.2f}" if report.no_answer_accuracy is not None else "n/a",
        report.best_f1 or 0.0,
    )
    return point


def _best_point(curve: list[dict]) -> dict | None:
    return max(curve, key=lambda point: (point["has_answer_f1"] or 0.0, -point["step"]), default=None)


def _has_plateaued(curve: list[dict], patience: int) -> bool:
    """True when the last `patience` evaluations all came after the best one."""
    best = _best_point(curve)
    return best is not None and sum(point["step"] > best["step"] for point in curve) >= patience


def train_reader(
    *,
    train_path: str | Path,
    out_dir: str | Path | None = None,
    base_dir: str | Path | None = None,
    threads: int | None = None,
    bf16: bool | None = None,
    device: str | None = None,
    options: TrainOptions | None = None,
    **overrides,
) -> TrainResult:
    """Fine-tune `base_dir` for extractive QA; resumes from `out_dir` when it holds a checkpoint.

        result = train_reader(train_path="train-v1.1.json.gz", base_dir="models/minilm-squad-reader", epochs=1)
        Reader(result.out_dir).load()

    :param train_path: SQuAD-format training file (.json or .json.gz).
    :param out_dir: gets the final fp16 model and tokenizer, `validation.json` (held-out articles),
        `training.json` (summary and held-out curve), `best/` and `checkpoint/` (resumable state). Default:
        `default_run_dir()`, in the user's cache folder.
    :param base_dir: encoder or reader folder (default: all-MiniLM-L6-v2); a fresh QA head is added when it has none.
    :param threads: torch CPU threads (default: torch's choice, one per core).
    :param bf16: bf16 autocast; None uses it on a GPU, and on a CPU only where it has native bf16.
    :param device: "cpu" or a GPU ("cuda", "cuda:1"); None: the GPU when torch sees one, else the CPU. A run may
        resume on another device than it started on.
    :param options: a `TrainOptions`; keyword `overrides` (e.g. `epochs=2`) replace its fields.
    :returns: a `TrainResult`; `interrupted=True` when a signal stopped it (run the same call to resume).
    :raises TrainingError: missing base model, a checkpoint of another run, or a checkpoint that cannot be written.
    :raises DatasetError: the training file is missing or not SQuAD.
    """
    import dataclasses

    try:
        options = dataclasses.replace(options or TrainOptions(), **overrides)
    except TypeError as exc:
        raise ConfigError(str(exc)) from exc
    train_path, out_dir = Path(train_path), Path(out_dir) if out_dir is not None else default_run_dir()
    base_dir = Path(base_dir) if base_dir is not None else default_base_dir()
    if not train_path.is_file():
        raise DatasetError(f"No SQuAD file at {train_path}. Give the path of a SQuAD-format .json or .json.gz file.")
    if not (base_dir / "config.json").is_file():
        raise TrainingError(f"No encoder at {base_dir} (config.json missing). Pass --base with a model folder.")
    run = _TrainingRun(
        train_path=train_path,
        out_dir=out_dir,
        base_dir=base_dir,
        options=options,
        threads=threads,
        bf16=bf16,
        device=_training_device(device),
    )
    return run.train()


class _TrainingRun:
    """One resumable run: data, model, optimizer and schedule, the loop, checkpoints and the held-out curve."""

    def __init__(
        self,
        *,
        train_path: Path,
        out_dir: Path,
        base_dir: Path,
        options: TrainOptions,
        threads: int | None,
        bf16: bool | None,
        device: str = "cpu",
    ) -> None:
        import torch

        self.train_path, self.out_dir, self.base_dir, self.options = train_path, out_dir, base_dir, options
        if threads:
            torch.set_num_threads(threads)
        self.device, self.device_type = device, torch.device(device).type
        on_gpu = self.device_type != "cpu"
        self.use_bf16 = (on_gpu or _bf16_supported()) if bf16 is None else bf16
        self.checkpoint_path = out_dir / CHECKPOINT_DIR / "state.pt"
        # contents, not paths: the same training file or base model elsewhere resumes, an edited one does not
        self.data_fingerprint = {
            "train_sha256": _file_digest([train_path]),
            "base_sha256": _model_digest(base_dir),
            **options.data_fingerprint(),
        }
        self.fingerprint = {
            **self.data_fingerprint,
            "base_dir": str(base_dir.resolve()),
            "batch_size": options.batch_size,
            "lr": options.lr,
            "epochs": options.epochs,
        }
        self.step = 0
        self.order: list[np.ndarray] | None = None
        self.recent_loss: float | None = None
        self.curve: list[dict] = []

    def _load_tokenizer(self):
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(self.base_dir)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"Cannot load a tokenizer from {self.base_dir}: {exc}".splitlines()[0]) from exc
        if not tokenizer.is_fast:
            raise TrainingError(f"The tokenizer in {self.base_dir} is not a fast tokenizer; answer offsets need one.")
        return tokenizer

    def _read_checkpoint(self) -> dict | None:
        import torch

        if not self.checkpoint_path.is_file():
            return None
        try:
            state = torch.load(self.checkpoint_path, weights_only=False, map_location="cpu")
        except (OSError, RuntimeError, EOFError) as exc:
            raise TrainingError(
                f"Cannot read the checkpoint {self.checkpoint_path}: {str(exc).splitlines()[0]}. "
                "Move it away to start afresh."
            ) from exc
        ignored = {"epochs", "base_dir"}  # the schedule may be recomputed; a base model may move
        changed = sorted(
            key
            for key in self.fingerprint
            if key not in ignored and state["fingerprint"].get(key) != self.fingerprint[key]
        )
        if changed:
            raise TrainingError(
                f"{self.out_dir} holds a checkpoint of another run (different {', '.join(changed)}). "
                "Use the same file, base model and options to resume, or another --out to start "
                "afresh."
            )
        return state

    def _build_model(self):
        import torch
        from transformers import AutoModelForQuestionAnswering

        try:
            model = AutoModelForQuestionAnswering.from_pretrained(self.base_dir, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise TrainingError(f"Cannot load the encoder from {self.base_dir}: {exc}".splitlines()[0]) from exc
        model.to(self.device).train()
        no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
        groups = [
            {
                "params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)],
                "weight_decay": WEIGHT_DECAY,
            },
            {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
        ]
        return model, torch.optim.AdamW(groups, lr=self.options.lr)

    def _restore(self, state: dict, model, optimizer, scheduler) -> None:
        import torch

        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        self.step, self.recent_loss = state["step"], state["recent_loss"]
        self.curve = list(state.get("curve", []))
        sizes = state["order_sizes"]
        self.order = np.split(state["order"], np.cumsum(sizes)[:-1]) if len(sizes) else None
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])

    def train(self) -> TrainResult:
        import torch
        from transformers.utils import logging as transformers_logging

        options, out_dir = self.options, self.out_dir
        started = time.perf_counter()
        out_dir.mkdir(parents=True, exist_ok=True)
        transformers_logging.disable_progress_bar()
        tokenizer = self._load_tokenizer()
        state = self._read_checkpoint()
        torch.manual_seed(options.seed)
        features, summary = _prepare_data(
            train_path=self.train_path,
            out_dir=out_dir,
            tokenizer=tokenizer,
            fingerprint=self.data_fingerprint,
            validation_articles=options.validation_articles,
            recipe=options.recipe,
            limit_questions=options.limit_questions,
            max_length=options.max_length,
            doc_stride=options.doc_stride,
            seed=options.seed,
        )
        gc.collect()
        gc.freeze()  # millions of long-lived objects from JSON parsing are gone; keep the collector off what is left
        _release_free_memory()

        model, optimizer = self._build_model()
        steps_per_epoch = math.ceil(len(features) / options.batch_size)
        total_steps = max(1, math.ceil(steps_per_epoch * options.epochs))
        warmup_steps = max(1, int(total_steps * WARMUP_RATIO))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup_steps, total_steps))
        if state is not None:
            self._restore(state, model, optimizer, scheduler)
            logger.info("resuming step=%d of total_steps=%d from %s", self.step, total_steps, self.checkpoint_path)
            if state["fingerprint"].get("epochs") != options.epochs:
                logger.info(
                    "schedule changed: epochs %s -> %s, the learning rate now reaches zero at step %d",
                    state["fingerprint"].get("epochs"),
                    options.epochs,
                    total_steps,
                )
            del state
        stop_at = total_steps if options.max_steps is None else min(options.max_steps, total_steps)
        logger.info(
            "training features=%d steps_per_epoch=%d total_steps=%d stop_at=%d batch_size=%d bf16=%s device=%s "
            "threads=%d",
            len(features),
            steps_per_epoch,
            total_steps,
            stop_at,
            options.batch_size,
            self.use_bf16,
            self.device,
            torch.get_num_threads(),
        )

        def checkpoint(epoch: int) -> None:
            _save_checkpoint(
                self.checkpoint_path,
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
                step=self.step,
                epoch=epoch,
                order=self.order,
                fingerprint=self.fingerprint,
                recent_loss=self.recent_loss,
                curve=self.curve,
            )

        def evaluate() -> bool:
            """Add a point to the curve, keep the best model; True when the run has plateaued."""
            if options.eval_every is None or any(point["step"] == self.step for point in self.curve):
                return False
            model.eval()
            with torch.no_grad():
                self.curve.append(
                    _evaluate(
                        model,
                        tokenizer,
                        out_dir=out_dir,
                        step=self.step,
                        questions=options.eval_questions,
                        device=self.device,
                    )
                )
            best = _best_point(self.curve)
            if best is not None and best["step"] == self.step:
                _save_final_model(model, tokenizer, out_dir / BEST_DIR)
            return _has_plateaued(self.curve, options.patience)

        interrupted = plateaued = False
        with _StopRequest() as stop:
            if options.eval_every is not None and not self.curve:
                evaluate()  # where the base model starts, on the same questions; a stop here still checkpoints
            run_started, run_start_step, last_saved = time.perf_counter(), self.step, self.step
            while self.step < stop_at and not (interrupted or plateaued):
                epoch, position = divmod(self.step, steps_per_epoch)
                if self.order is None or position == 0:
                    self.order = epoch_batches(
                        features.lengths, batch_size=options.batch_size, seed=options.seed, epoch=epoch
                    )
                for indices in self.order[position:]:
                    if self.step >= stop_at:
                        break
                    value = self._train_step(model, optimizer, scheduler, batch_tensors(features, indices))
                    self.recent_loss = value if self.recent_loss is None else 0.95 * self.recent_loss + 0.05 * value
                    if self.step % options.log_every == 0 or self.step == stop_at:
                        s_per_step = (time.perf_counter() - run_started) / (self.step - run_start_step)
                        logger.info(
                            "step=%d/%d epoch=%d loss=%.4f lr=%.2e s_per_step=%.2f eta=%s",
                            self.step,
                            total_steps,
                            epoch + 1,
                            self.recent_loss,
                            scheduler.get_last_lr()[0],
                            s_per_step,
                            _format_eta(s_per_step * (stop_at - self.step)),
                        )
                    if stop.signal is not None:
                        interrupted = True
                        break
                    if options.eval_every is not None and self.step % options.eval_every == 0:
                        plateaued = evaluate()
                    if self.step % options.checkpoint_every == 0 or plateaued:
                        # position within the saved order is step % steps_per_epoch; a new epoch rebuilds its order
                        checkpoint(epoch)
                        last_saved = self.step
                    if plateaued:
                        logger.info(
                            "held-out has-answer F1 has not improved for %d evaluations: stopping", options.patience
                        )
                        break
            if self.step != last_saved or not self.checkpoint_path.is_file():
                checkpoint(divmod(max(self.step - 1, 0), steps_per_epoch)[0])

        if not interrupted:
            if not plateaued:
                evaluate()
            _save_final_model(model, tokenizer, out_dir)
        best = _best_point(self.curve)
        result = TrainResult(
            out_dir=out_dir,
            steps=self.step,
            total_steps=total_steps,
            epochs=options.epochs,
            features=len(features),
            curve=tuple(self.curve),
            best_step=best["step"] if best else None,
            examples=summary["examples"],
            negatives=summary["negatives"],
            validation_questions=summary["validation_questions"],
            final_loss=self.recent_loss,
            seconds=time.perf_counter() - started,
            interrupted=interrupted,
        )
        record = {
            **asdict(result),
            "out_dir": str(out_dir),
            "options": self.fingerprint,
            "data": {k: v for k, v in summary.items() if k not in ("fingerprint", "training_titles")},
        }
        (out_dir / SUMMARY_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        logger.info(
            "training %s steps=%d/%d loss=%s seconds=%.0f out=%s",
            "interrupted" if interrupted else "done",
            self.step,
            total_steps,
            f"{self.recent_loss:.4f}" if self.recent_loss is not None else "n/a",
            result.seconds,
            out_dir,
        )
        gc.unfreeze()
        return result

    def _train_step(self, model, optimizer, scheduler, batch: dict) -> float:
        import torch

        batch = {name: tensor.to(self.device, non_blocking=True) for name, tensor in batch.items()}
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.use_bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        self.step += 1
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingError(f"The loss became {value} at step {self.step}; try a lower --lr.")
        return value
