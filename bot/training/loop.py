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

import gc
import json
import logging
import math
import random
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bot.errors import ConfigError, TrainingError
from bot.training.squad import read_squad_json, squad_questions, write_squad_json
from bot.training.data import (Features, _batch_tensors, build_examples, build_features, default_base_dir,
                               epoch_batches, split_articles)

__all__ = ["TrainingError", "TrainResult", "train_reader", "export_checkpoint"]

logger = logging.getLogger(__name__)

WARMUP_RATIO = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
CHECKPOINT_DIR = "checkpoint"
VALIDATION_FILE = "validation.json"
SUMMARY_FILE = "training.json"


@dataclass(frozen=True)
class TrainResult:
    """What a call to `train_reader` did; `interrupted` runs resume with the same call."""

    out_dir: Path
    steps: int
    total_steps: int
    epochs: float
    features: int
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
        self._previous: dict[int, object] = {}

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


def _prepare_data(*, train_path: Path, out_dir: Path, tokenizer, fingerprint: dict, validation_articles: int,
                  negative_ratio: float, limit_questions: int | None, max_length: int, doc_stride: int,
                  seed: int) -> tuple[Features, dict]:
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
    write_squad_json(out_dir / VALIDATION_FILE, validation)
    questions = squad_questions(training, source=str(train_path))
    if limit_questions is not None:
        questions = questions[:limit_questions]
    examples = build_examples(questions, negative_ratio=negative_ratio, seed=seed)
    del articles, training
    features = build_features(tokenizer, examples, max_length=max_length, doc_stride=doc_stride)
    summary = {
        "fingerprint": fingerprint,
        "questions": len(questions),
        "examples": len(examples),
        "negatives": sum(example.is_negative for example in examples),
        "features": len(features),
        "cls_target_features": int((features.start_positions == 0).sum()),
        "mean_length": float(features.lengths.mean()),
        "validation_articles": len(validation),
        "validation_questions": len(squad_questions(validation, source="validation")),
        "training_titles": sorted({question.article_title for question in questions}),
    }
    del examples, questions
    (out_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    features.save(cache)
    summary_path.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    logger.info("features built features=%d examples=%d negatives=%d mean_length=%.1f seconds=%.0f",
                len(features), summary["examples"], summary["negatives"], summary["mean_length"],
                time.perf_counter() - started)
    return features, summary


def _save_checkpoint(path: Path, *, model, optimizer, scheduler, step: int, epoch: int, order: list[np.ndarray],
                     fingerprint: dict, recent_loss: float | None) -> None:
    import torch

    state = {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
        "step": step, "epoch": epoch, "fingerprint": fingerprint, "recent_loss": recent_loss,
        "order": np.concatenate(order) if order else np.zeros(0, dtype=np.int64),
        "order_sizes": np.array([len(batch) for batch in order or []], dtype=np.int64),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
    }
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)  # atomic: an interrupted save never leaves a half-written checkpoint
    logger.info("checkpoint saved step=%d path=%s", step, path)


def _save_final_model(model, tokenizer, out_dir: Path) -> None:
    import copy

    import torch

    half = copy.deepcopy(model).to(torch.float16)
    half.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    del half


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


def train_reader(*, train_path: str | Path, out_dir: str | Path, base_dir: str | Path | None = None,
                 epochs: float = 2, max_length: int = 256, doc_stride: int = 128, batch_size: int = 32,
                 lr: float = 1e-4, validation_articles: int = 40, negative_ratio: float = 1 / 3,
                 max_steps: int | None = None, limit_questions: int | None = None, threads: int | None = None,
                 seed: int = 13, checkpoint_every: int = 200, log_every: int = 10,
                 bf16: bool | None = None) -> TrainResult:
    """Fine-tune `base_dir` (default: all-MiniLM-L6-v2) for extractive QA; resumes from `out_dir` if it holds a checkpoint.

        result = train_reader(train_path="train-v1.1.json.gz", out_dir="runs/reader")
        Reader(result.out_dir).load()

    :param train_path: SQuAD-format training file (.json or .json.gz).
    :param out_dir: gets the final fp16 model and tokenizer, `validation.json` (held-out articles),
        `training.json` (summary) and `checkpoint/` (resumable state; not part of the model).
    :param base_dir: encoder folder; a fresh QA head is added when it has none.
    :param epochs: passes over the training features, fractions allowed (0.75: three quarters of the batches);
        the learning rate decays to zero at the end. It may change when resuming: the schedule is then recomputed.
    :param max_length: tokens per window; `doc_stride`: tokens shared by consecutive windows of a long paragraph.
    :param validation_articles: whole articles held out (chosen with `seed`), written to `validation.json`.
    :param negative_ratio: share of questions that also get a "no answer" example on another paragraph.
    :param max_steps: stop after this many optimizer steps in total (the schedule still spans `epochs`);
        the model is saved as at the end, and a later call with a higher value continues.
    :param limit_questions: train on the first N training questions only (smoke runs).
    :param threads: torch CPU threads (default: torch's choice, one per core).
    :param checkpoint_every: save resumable state every N steps (and on SIGINT/SIGTERM).
    :param bf16: bf16 autocast; None uses it only where the CPU has native bf16.
    :returns: a `TrainResult`; `interrupted=True` when a signal stopped it (run the same call to resume).
    :raises TrainingError: missing base model or a checkpoint made with different data options.
    :raises DatasetError: the training file is missing or not SQuAD.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("checkpoint_every", checkpoint_every),
                        ("log_every", log_every)):
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}.")
    if lr <= 0:
        raise ConfigError(f"lr must be positive, got {lr}.")
    if max_steps is not None and max_steps <= 0:
        raise ConfigError(f"max_steps must be positive, got {max_steps}.")
    train_path, out_dir = Path(train_path), Path(out_dir)
    base_dir = Path(base_dir) if base_dir is not None else default_base_dir()
    if not (base_dir / "config.json").is_file():
        raise TrainingError(f"No encoder at {base_dir} (config.json missing). Pass --base with a model folder.")
    if threads:
        torch.set_num_threads(threads)
    use_bf16 = _bf16_supported() if bf16 is None else bf16
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / CHECKPOINT_DIR / "state.pt"
    # what the features depend on (their cache is reused when these match), then what the run depends on
    data_fingerprint = {"train_path": str(train_path.resolve()), "base_dir": str(base_dir.resolve()),
                        "max_length": max_length, "doc_stride": doc_stride, "validation_articles": validation_articles,
                        "negative_ratio": negative_ratio, "limit_questions": limit_questions, "seed": seed}
    fingerprint = {**data_fingerprint, "epochs": epochs, "batch_size": batch_size, "lr": lr}
    started = time.perf_counter()

    transformers_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(base_dir)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Cannot load a tokenizer from {base_dir}: {exc}".splitlines()[0]) from exc
    if not tokenizer.is_fast:
        raise TrainingError(f"The tokenizer in {base_dir} is not a fast tokenizer; answer offsets need one.")

    state = None
    if checkpoint_path.is_file():
        state = torch.load(checkpoint_path, weights_only=False)
        changed = sorted(k for k in fingerprint if k != "epochs" and state["fingerprint"].get(k) != fingerprint[k])
        if changed:
            raise TrainingError(f"{out_dir} holds a checkpoint made with different options ({', '.join(changed)}). "
                                "Use the same options to resume, or another --out folder to start afresh.")
    torch.manual_seed(seed)
    features, summary = _prepare_data(
        train_path=train_path, out_dir=out_dir, tokenizer=tokenizer, fingerprint=data_fingerprint,
        validation_articles=validation_articles, negative_ratio=negative_ratio, limit_questions=limit_questions,
        max_length=max_length, doc_stride=doc_stride, seed=seed)
    gc.collect()
    gc.freeze()  # millions of long-lived objects from JSON parsing are gone; keep the collector off what is left
    _release_free_memory()

    try:
        model = AutoModelForQuestionAnswering.from_pretrained(base_dir, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TrainingError(f"Cannot load the encoder from {base_dir}: {exc}".splitlines()[0]) from exc
    model.train()
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not n.endswith(no_decay)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in model.named_parameters() if n.endswith(no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr)
    steps_per_epoch = math.ceil(len(features) / batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * epochs))
    warmup_steps = max(1, int(total_steps * WARMUP_RATIO))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup_steps, total_steps))
    step, order = 0, None
    recent_loss: float | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, recent_loss = state["step"], state["recent_loss"]
        order = np.split(state["order"], np.cumsum(state["order_sizes"])[:-1]) if len(state["order_sizes"]) else None
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        logger.info("resuming step=%d of total_steps=%d from %s", step, total_steps, checkpoint_path)
        if state["fingerprint"].get("epochs") != epochs:
            logger.info("schedule changed: epochs %s -> %s, the learning rate now reaches zero at step %d",
                        state["fingerprint"].get("epochs"), epochs, total_steps)
        del state
    stop_at = total_steps if max_steps is None else min(max_steps, total_steps)
    logger.info("training features=%d steps_per_epoch=%d total_steps=%d stop_at=%d batch_size=%d bf16=%s threads=%d",
                len(features), steps_per_epoch, total_steps, stop_at, batch_size, use_bf16, torch.get_num_threads())

    def checkpoint(epoch: int) -> None:
        _save_checkpoint(checkpoint_path, model=model, optimizer=optimizer, scheduler=scheduler, step=step,
                         epoch=epoch, order=order, fingerprint=fingerprint, recent_loss=recent_loss)

    interrupted = False
    run_started, run_start_step, last_saved = time.perf_counter(), step, step
    with _StopRequest() as stop:
        while step < stop_at and not interrupted:
            epoch, position = divmod(step, steps_per_epoch)
            if order is None or position == 0:
                order = epoch_batches(features.lengths, batch_size=batch_size, seed=seed, epoch=epoch)
            for indices in order[position:]:
                if step >= stop_at:
                    break
                batch = _batch_tensors(features, indices)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                    loss = model(**batch).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(f"The loss became {value} at step {step}; try a lower --lr.")
                recent_loss = value if recent_loss is None else 0.95 * recent_loss + 0.05 * value
                if step % log_every == 0 or step == stop_at:
                    elapsed = time.perf_counter() - run_started
                    s_per_step = elapsed / (step - run_start_step)
                    logger.info("step=%d/%d epoch=%d loss=%.4f lr=%.2e s_per_step=%.2f eta=%s", step, total_steps,
                                epoch + 1, recent_loss, scheduler.get_last_lr()[0], s_per_step,
                                _format_eta(s_per_step * (stop_at - step)))
                if stop.signal is not None:
                    interrupted = True
                    break
                if step % checkpoint_every == 0:
                    # position within the saved order is step % steps_per_epoch; a new epoch rebuilds its order
                    checkpoint(epoch)
                    last_saved = step
        if step != last_saved or not checkpoint_path.is_file():
            checkpoint(divmod(max(step - 1, 0), steps_per_epoch)[0])

    if not interrupted:
        _save_final_model(model, tokenizer, out_dir)
    result = TrainResult(out_dir=out_dir, steps=step, total_steps=total_steps, epochs=epochs,
                         features=len(features), examples=summary["examples"], negatives=summary["negatives"],
                         validation_questions=summary["validation_questions"], final_loss=recent_loss,
                         seconds=time.perf_counter() - started, interrupted=interrupted)
    record = {**asdict(result), "out_dir": str(out_dir), "options": fingerprint,
              "data": {k: v for k, v in summary.items() if k not in ("fingerprint", "training_titles")}}
    (out_dir / SUMMARY_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
    logger.info("training %s steps=%d/%d loss=%s seconds=%.0f out=%s", "interrupted" if interrupted else "done",
                step, total_steps, f"{recent_loss:.4f}" if recent_loss is not None else "n/a",
                result.seconds, out_dir)
    gc.unfreeze()
    return result
