"""Reader training on a tiny SQuAD slice with a tiny randomly initialised BERT: features, negatives, checkpoints."""

from __future__ import annotations

import json
import logging
import math
import re

import pytest

from bot.errors import ConfigError
from bot.training.data import (
    Recipe,
    TrainingExample,
    build_features,
    build_window_examples,
    epoch_batches,
    hard_negative_articles,
    split_articles,
)
from bot.training.loop import TrainingError, default_run_dir, export_checkpoint, train_reader
from bot.training.squad import DatasetError, load_squad, squad_questions, write_squad_json

FILLER = (
    "the river town kept a small market by the old bridge and people came there every week to trade "
    "grain wool and tools while the mill turned slowly beside the water "
)


def _article(title: str, n_paragraphs: int) -> dict:
    paragraphs = []
    for p in range(n_paragraphs):
        name, year = f"{title.lower()}{p}name", str(1900 + p)
        context = f"{FILLER * (p % 3)}The {title} office number {p} was opened by {name} in {year}. {FILLER}"
        paragraphs.append(
            {
                "context": context,
                "qas": [
                    {
                        "id": f"{title}-{p}-who",
                        "question": f"Who opened the {title} office number {p}?",
                        "answers": [{"text": name, "answer_start": context.index(name)}],
                    },
                    {
                        "id": f"{title}-{p}-when",
                        "question": f"When was the {title} office number {p} opened?",
                        "answers": [{"text": year, "answer_start": context.index(year)}],
                    },
                ],
            }
        )
    return {"title": title, "paragraphs": paragraphs}


ARTICLES = [_article(title, 3) for title in ("Alpha", "Beta", "Gamma", "Delta")]


@pytest.fixture(scope="module")
def tiny_squad(tmp_path_factory):
    return write_squad_json(tmp_path_factory.mktemp("squad") / "train.json", ARTICLES)


@pytest.fixture(scope="module")
def tiny_base_dir(tmp_path_factory):
    """A tiny BERT encoder without a QA head, with a vocabulary built from the tiny SQuAD slice."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-base")
    text = json.dumps(ARTICLES).lower()
    words = sorted(set(re.findall(r"[a-z0-9]+|[^\sa-z0-9]", text)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(vocab),
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tokenizer(tiny_base_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_base_dir)


def _train(tiny_squad, tiny_base_dir, out_dir, **options):
    defaults = dict(
        train_path=tiny_squad,
        out_dir=out_dir,
        base_dir=tiny_base_dir,
        epochs=2,
        max_length=96,
        doc_stride=16,
        batch_size=4,
        validation_articles=1,
        threads=1,
        checkpoint_every=2,
        log_every=1,
    )
    return train_reader(**{**defaults, **options})


def test_answer_tokens_map_back_to_the_answer_text(tokenizer):
    questions = squad_questions(ARTICLES)
    recipe = Recipe(window_words=30, paragraph_share=1.0, other_window_share=0.0, removed_sentence_share=0.0)
    examples = build_window_examples(questions, recipe=recipe, seed=1)
    assert {e.kind for e in examples} == {"window", "paragraph"}
    features = build_features(tokenizer, examples, max_length=96, doc_stride=16, keep_offsets=True)

    assert len(features) > len(examples)  # long paragraphs are split into several windows
    found = set()
    for row in range(len(features)):
        example = examples[features.example_index[row]]
        start, end = int(features.start_positions[row]), int(features.end_positions[row])
        if start == 0:
            assert end == 0
            continue
        assert features.context_starts[row] <= start <= end < features.lengths[row] - 1
        char_start, char_end = features.offsets[row, start, 0], features.offsets[row, end, 1]
        assert example.context[char_start:char_end] == example.context[example.answer_start : example.answer_end]
        found.add(int(features.example_index[row]))
    assert found == set(range(len(examples)))  # every answer lies wholly inside at least one window


def test_windows_without_the_answer_target_cls(tokenizer):
    context = FILLER * 3 + "It was opened by zeta."
    example = TrainingExample("Who opened it?", context, context.index("zeta"), context.index("zeta") + 4, 0)
    features = build_features(tokenizer, [example], max_length=96, doc_stride=16)
    assert [int(s > 0) for s in features.start_positions] == [0] * (len(features) - 1) + [1]


def test_training_windows_are_the_passages_the_bot_reads():
    from bot.core.text import group_passages, split_sentences

    questions = squad_questions(ARTICLES[:1])
    recipe = Recipe(window_words=30, paragraph_share=0.0, other_window_share=0.0, removed_sentence_share=0.0)
    windows = {e.context for e in build_window_examples(questions, recipe=recipe, seed=1)}
    body = "\n\n".join(paragraph["context"] for paragraph in ARTICLES[0]["paragraphs"])
    sentences = split_sentences(body)
    passages = {
        body[sentences[a].char_start : sentences[b].char_end] for a, b in group_passages(sentences, max_words=30)
    }
    assert windows <= passages and len(windows) == len(questions) // 2  # the who/when pair of a paragraph share one


def test_hard_negatives_look_answerable_but_do_not_hold_the_answer(tokenizer):
    questions = squad_questions(ARTICLES)
    recipe = Recipe(window_words=80, paragraph_share=0.0, other_window_share=1.0, removed_sentence_share=1.0)
    examples = build_window_examples(questions, recipe=recipe, seed=1)
    by_id = {q.question_id: q for q in questions}
    negatives = [e for e in examples if e.is_negative]
    assert {e.kind for e in negatives} == {"other_window", "sentence_removed"}
    assert sum(e.kind == "other_window" for e in negatives) == len(questions)
    for negative in negatives:
        source = by_id[negative.question_id]
        assert negative.article_index == source.article_index
        assert source.answers[0].text.lower() not in negative.context.lower()
    removed = next(e for e in negatives if e.kind == "sentence_removed" and e.question_id == "Alpha-0-who")
    assert "office number 0 was opened" not in removed.context and "river town" in removed.context
    features = build_features(tokenizer, negatives, max_length=96, doc_stride=16)
    assert (features.start_positions.max(), features.end_positions.max()) == (0, 0)


def test_validation_file_tags_each_hard_negative_with_its_kind(tmp_path):
    path = write_squad_json(
        tmp_path / "validation.json", hard_negative_articles(ARTICLES[:1], recipe=Recipe(), seed=1), version="2.0"
    )
    questions = load_squad(path)
    positives = [q for q in questions if not q.is_impossible]
    assert [q.question_id for q in positives] == [q.question_id for q in squad_questions(ARTICLES[:1])]
    kinds = {q.question_id: q.kind for q in questions if q.is_impossible}
    assert kinds["Alpha-0-who-other_window"] == "other_window"
    assert kinds["Alpha-0-when-sentence_removed"] == "sentence_removed"
    assert set(kinds.values()) == {"other_window", "sentence_removed"}


def test_split_holds_out_whole_articles_deterministically():
    training, validation = split_articles(ARTICLES, validation_articles=1, seed=5)
    again = split_articles(ARTICLES, validation_articles=1, seed=5)
    assert (training, validation) == again
    assert len(validation) == 1 and validation[0] not in training and len(training) == 3
    with pytest.raises(ConfigError, match="validation_articles must be between 0 and 3"):
        split_articles(ARTICLES, validation_articles=4, seed=5)


def test_batches_cover_every_feature_once_and_group_similar_lengths():
    import numpy as np

    lengths = np.random.default_rng(0).integers(20, 250, size=1000)
    batches = epoch_batches(lengths, batch_size=8, seed=3, epoch=0)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert len(batches) == math.ceil(1000 / 8)
    padded = sum(len(b) * lengths[b].max() for b in batches)
    assert padded < 1.1 * lengths.sum()  # bucketing: little padding
    assert [b.tolist() for b in batches] == [b.tolist() for b in epoch_batches(lengths, batch_size=8, seed=3, epoch=0)]


def test_training_writes_a_small_fp16_model_validation_set_and_checkpoint(tiny_squad, tiny_base_dir, tmp_path):
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForQuestionAnswering

    out = tmp_path / "run"
    result = _train(tiny_squad, tiny_base_dir, out, max_steps=3)

    assert (result.steps, result.interrupted) == (3, False)
    assert math.isfinite(result.final_loss)
    assert (out / "checkpoint" / "state.pt").is_file()
    with safe_open(out / "model.safetensors", framework="pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}
    model = AutoModelForQuestionAnswering.from_pretrained(out)
    assert model.qa_outputs.out_features == 2

    validation = load_squad(out / "validation.json")
    summary = json.loads((out / "checkpoint" / "data.json").read_text())
    assert {q.article_title for q in validation} == {"Alpha", "Beta", "Gamma", "Delta"} - set(
        summary["training_titles"]
    )
    assert len(summary["training_titles"]) == 3
    assert json.loads((out / "training.json").read_text())["steps"] == 3


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(
    tiny_squad, tiny_base_dir, tmp_path, caplog
):
    import torch
    from transformers import AutoModelForQuestionAnswering

    straight = _train(tiny_squad, tiny_base_dir, tmp_path / "straight", max_steps=4)
    _train(tiny_squad, tiny_base_dir, tmp_path / "resumed", max_steps=2)
    with caplog.at_level(logging.INFO, logger="bot.training.loop"):
        resumed = _train(tiny_squad, tiny_base_dir, tmp_path / "resumed", max_steps=4)

    assert "resuming step=2 of total_steps=" in caplog.text
    assert (straight.steps, resumed.steps) == (4, 4)
    a = torch.load(tmp_path / "straight" / "checkpoint" / "state.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint" / "state.pt", weights_only=False)["model"]
    assert all(torch.allclose(a[name], b[name], atol=1e-5) for name in a)
    assert export_checkpoint(tmp_path / "resumed", tmp_path / "exported") == 4
    exported = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "exported", dtype=torch.float32).state_dict()
    assert all(torch.allclose(exported[name], b[name], atol=1e-2) for name in exported)


def test_resume_refuses_a_checkpoint_made_with_other_options(tiny_squad, tiny_base_dir, tmp_path):
    _train(tiny_squad, tiny_base_dir, tmp_path / "run", max_steps=1)
    with pytest.raises(TrainingError, match=r"another run \(different batch_size, lr\)"):
        _train(tiny_squad, tiny_base_dir, tmp_path / "run", max_steps=2, batch_size=2, lr=2e-5)
    with pytest.raises(TrainingError, match=r"another run \(different recipe\)"):
        _train(tiny_squad, tiny_base_dir, tmp_path / "run", max_steps=2, recipe=Recipe(paragraph_share=1.0))


def test_resume_compares_the_training_file_by_content_not_path(tiny_squad, tiny_base_dir, tmp_path):
    _train(tiny_squad, tiny_base_dir, tmp_path / "run", max_steps=1)
    copy = tmp_path / "moved" / "train.json"
    copy.parent.mkdir()
    copy.write_bytes(tiny_squad.read_bytes())
    assert _train(copy, tiny_base_dir, tmp_path / "run", max_steps=2).steps == 2
    edited = write_squad_json(tmp_path / "edited.json", ARTICLES[:3])
    with pytest.raises(TrainingError, match=r"another run \(different train_sha256\)"):
        _train(edited, tiny_base_dir, tmp_path / "run", max_steps=3)


def test_held_out_curve_keeps_the_best_model_and_stops_at_a_plateau(tiny_squad, tiny_base_dir, tmp_path):
    out = tmp_path / "run"
    result = _train(tiny_squad, tiny_base_dir, out, epochs=20, eval_every=1, eval_questions=6, patience=2, lr=1e-6)

    steps = [point["step"] for point in result.curve]
    assert steps[0] == 0 and steps == list(range(len(steps)))  # the base model first, then every step
    best = max(result.curve, key=lambda point: (point["has_answer_f1"], -point["step"]))
    assert result.best_step == best["step"] and steps[-1] - best["step"] == 2 and not result.interrupted
    assert (out / "best" / "model.safetensors").is_file()
    recorded = json.loads((out / "training.json").read_text())["curve"]
    assert [point["step"] for point in recorded] == steps
    assert {"has_answer_f1", "no_answer_accuracy_by_kind", "best_f1", "best_f1_threshold"} <= set(recorded[0])


def test_runs_live_in_the_user_cache_folder_by_default(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_run_dir() == tmp_path / "cache" / "qa-bot" / "runs" / "reader"


def test_a_checkpoint_that_cannot_be_written_keeps_the_previous_one(tiny_squad, tiny_base_dir, tmp_path, monkeypatch):
    import torch

    out = tmp_path / "run"
    _train(tiny_squad, tiny_base_dir, out, max_steps=2)
    before = (out / "checkpoint" / "state.pt").read_bytes()

    def full_disk(obj, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        TrainingError,
        match=r"Could not write the checkpoint .*state.pt \(\[Errno 28\] No space "
        r"left on device\); the previous checkpoint is kept",
    ):
        _train(tiny_squad, tiny_base_dir, out, max_steps=4)
    assert (out / "checkpoint" / "state.pt").read_bytes() == before
    assert not (out / "checkpoint" / "state.tmp").exists()


def test_resume_with_fewer_epochs_recomputes_the_schedule_and_ends_there(tiny_squad, tiny_base_dir, tmp_path, caplog):
    first = _train(tiny_squad, tiny_base_dir, tmp_path / "run", epochs=2, max_steps=2)
    with caplog.at_level(logging.INFO, logger="bot.training.loop"):
        shorter = _train(tiny_squad, tiny_base_dir, tmp_path / "run", epochs=0.5)

    assert shorter.total_steps == math.ceil(first.total_steps / 4) < first.total_steps
    assert (shorter.steps, shorter.interrupted) == (shorter.total_steps, False)
    assert "schedule changed: epochs 2 -> 0.5" in caplog.text
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_missing_training_file_is_a_dataset_error(tiny_base_dir, tmp_path):
    with pytest.raises(DatasetError, match="No SQuAD file at"):
        train_reader(train_path=tmp_path / "nope.json", out_dir=tmp_path / "run", base_dir=tiny_base_dir)


def test_missing_base_model_is_a_training_error(tiny_squad, tmp_path):
    with pytest.raises(TrainingError, match="No encoder at"):
        train_reader(train_path=tiny_squad, out_dir=tmp_path / "run", base_dir=tmp_path)


def test_train_reader_command_reports_where_the_model_is(tiny_squad, tiny_base_dir, tmp_path):
    from click.testing import CliRunner

    from bot.cli import cli

    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        [
            "train-reader",
            "--train",
            str(tiny_squad),
            "--out",
            str(out),
            "--base",
            str(tiny_base_dir),
            "--max-length",
            "96",
            "--doc-stride",
            "16",
            "--batch-size",
            "4",
            "--validation-articles",
            "1",
            "--max-steps",
            "1",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1].startswith("Trained 1 of ")
    assert (
        f"model saved in {out}. Evaluate: qa-bot eval-reader {out / 'validation.json'} --model {out}" in result.output
    )


def test_train_reader_command_with_a_missing_file_is_one_error_line(tiny_base_dir, tmp_path):
    from click.testing import CliRunner

    from bot.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "train-reader",
            "--train",
            str(tmp_path / "nope.json"),
            "--out",
            str(tmp_path / "run"),
            "--base",
            str(tiny_base_dir),
        ],
    )
    assert (result.exit_code, result.output.splitlines()[-1]) == (
        1,
        f"Error: No SQuAD file at {tmp_path / 'nope.json'}. Give the path of a SQuAD-format .json or .json.gz file.",
    )


def torch_sees_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.parametrize(
    "device, message",
    [
        ("gpu0", "Unknown device 'gpu0'"),
        pytest.param(
            "cuda",
            "Device 'cuda' asked for, but torch sees no CUDA GPU here; use --device cpu.",
            marks=pytest.mark.skipif(torch_sees_cuda(), reason="this machine has a CUDA GPU"),
        ),
    ],
)
def test_train_reader_command_names_a_device_it_cannot_use(tiny_squad, tiny_base_dir, tmp_path, device, message):
    from click.testing import CliRunner

    from bot.cli import cli

    args = ["train-reader", "--train", str(tiny_squad), "--out", str(tmp_path / "run"), "--base", str(tiny_base_dir)]
    result = CliRunner().invoke(cli, [*args, "--device", device])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith("Error: ")
    assert message in result.output
    assert not (tmp_path / "run" / "checkpoint").exists()
