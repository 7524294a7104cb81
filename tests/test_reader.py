"""The reader on a tiny random model: spans always map back to their context exactly; load errors are clear."""

from __future__ import annotations

import pytest

from bot.core.reader import Reader, ReaderConfig
from bot.errors import ReaderError
from tests.fakes.reader import FakeReader

CONTEXTS = [
    "Kestrel Foods said on Monday that Dr. Amara Velasquez will become its CEO in May.",
    "The club was founded by Noor Haddad in 2015. Its youngest player, Sam Lee, is nine years old.",
    "Engineer Lena Ortiz said the bridge's steel beams were replaced.",
]


@pytest.fixture(scope="module")
def reader(tiny_reader_dir) -> Reader:
    return Reader(tiny_reader_dir, max_answer_tokens=5).load()


def assert_span_invariants(reader: Reader, contexts: list[str], spans) -> None:
    for span in spans:
        context = contexts[span.context_index]
        assert 0 <= span.char_start < span.char_end <= len(context)
        assert context[span.char_start : span.char_end] == span.text
        assert span.text == span.text.strip()
        assert 0.0 <= span.score <= 1.0
        tokens = reader.tokenizer(span.text, add_special_tokens=False)["input_ids"]
        assert len(tokens) <= reader.max_answer_tokens


def test_spans_are_exact_slices_of_their_context(reader):
    for question in ["Who is the CEO?", "Who founded the club?", "What was replaced?", "?"]:
        spans = reader.run(question, CONTEXTS)
        assert spans
        assert_span_invariants(reader, CONTEXTS, spans)
        assert [s.logit for s in spans] == sorted((s.logit for s in spans), reverse=True)
        assert {s.context_index for s in spans} <= {0, 1, 2}
        for context_index in range(3):
            assert sum(s.context_index == context_index for s in spans) <= 5


def test_best_returns_the_top_span(reader):
    spans = reader.run("Who is the CEO?", CONTEXTS, top_n=1)
    assert reader.best("Who is the CEO?", CONTEXTS) == spans[0]


@pytest.mark.parametrize(
    "question, contexts",
    [
        ("Who is the CEO?", []),
        ("Who is the CEO?", [""]),
        ("Who is the CEO?", ["   \n "]),
        ("", CONTEXTS),
        ("   ", CONTEXTS),
    ],
)
def test_nothing_to_read_gives_no_spans(reader, question, contexts):
    assert reader.run(question, contexts) == []


def test_long_context_is_read_in_strided_windows_with_correct_offsets(tiny_reader_dir):
    reader = FakeReader(tiny_reader_dir, point_at="kestrel", max_length=64, doc_stride=16).load()
    context = "filler words " * 150 + "Velasquez said Kestrel grew. " + "more filler " * 40
    spans = reader.run("Who is the CEO?", [context])
    expected_start = context.index("Kestrel")
    assert [(s.char_start, s.char_end, s.text) for s in spans[:1]] == [(expected_start, expected_start + 7, "Kestrel")]
    assert len([s for s in spans if s.text == "Kestrel"]) == 1  # overlapping windows don't repeat a span
    assert_span_invariants(reader, [context], spans)


def test_answer_is_located_in_the_right_context(tiny_reader_dir):
    reader = FakeReader(tiny_reader_dir, point_at="haddad").load()
    best = reader.best("Who founded the club?", CONTEXTS)
    assert (best.context_index, best.text, best.char_start) == (1, "Haddad", CONTEXTS[1].index("Haddad"))


def test_random_model_on_long_contexts_keeps_invariants(tiny_reader_dir):
    reader = Reader(tiny_reader_dir, max_length=64, doc_stride=16, max_answer_tokens=4).load()
    contexts = [" ".join(CONTEXTS) * 6, "Short one.", CONTEXTS[2] * 9]
    spans = reader.run("Who is the CEO of Kestrel Foods?", contexts, top_n=3)
    assert 0 < len(spans) <= 9
    assert_span_invariants(reader, contexts, spans)


@pytest.mark.parametrize("max_length, doc_stride", [(64, 24), (128, 63), (384, 128)])
def test_very_long_question_is_trimmed_not_an_error(tiny_reader_dir, max_length, doc_stride):
    reader = Reader(tiny_reader_dir, max_length=max_length, doc_stride=doc_stride).load()
    question = "who is the ceo of kestrel foods " * 30
    spans = reader.run(question, [" ".join(CONTEXTS) * 3])
    assert spans
    assert_span_invariants(reader, [" ".join(CONTEXTS) * 3], spans)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*quantize.*:UserWarning")
@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_other_dtypes_keep_invariants(tiny_reader_dir, dtype):
    reader = Reader(tiny_reader_dir, dtype=dtype, max_answer_tokens=5).load()
    spans = reader.run("Who is the CEO?", CONTEXTS)
    assert spans
    assert_span_invariants(reader, CONTEXTS, spans)


def test_load_is_lazy_and_happens_once(tiny_reader_dir):
    reader = Reader(tiny_reader_dir)
    assert not reader.is_loaded
    model = reader.load().model
    assert reader.load().model is model


def test_missing_model_directory_raises_a_clear_reader_error(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ReaderError) as caught:
        Reader(missing).load()
    assert str(caught.value) == (
        f"Reader model directory {missing} does not exist. Set QABOT_READER_MODEL to a "
        "folder holding config.json, the weights and tokenizer files."
    )


def test_folder_without_a_model_raises_a_clear_reader_error(tmp_path):
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(
        ReaderError,
        match=r"^Cannot load the reader model .*empty-model.*Set QABOT_READER_MODEL to a "
        r"local extractive-QA model folder\.$",
    ):
        Reader(tmp_path / "empty-model").load()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_length": 128, "doc_stride": 64}, "doc_stride must be under half of max_length, got 64 and 128"),
        ({"dtype": "float16"}, "dtype must be float32, bfloat16 or int8, got 'float16'"),
    ],
)
def test_bad_reader_options_are_rejected(tiny_reader_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Reader(tiny_reader_dir, **kwargs)


def test_reader_from_config_reads_like_the_keyword_form(tiny_reader_dir):
    config = ReaderConfig(str(tiny_reader_dir), max_length=64, doc_stride=16, max_answer_tokens=4)
    assert (
        Reader.from_config(config).config
        == Reader(tiny_reader_dir, max_length=64, doc_stride=16, max_answer_tokens=4).config
        == config
    )
    reader = Reader(config)
    assert (
        reader.model_name,
        reader.max_length,
        reader.doc_stride,
        reader.max_answer_tokens,
        reader.dtype,
        reader.threads,
    ) == (str(tiny_reader_dir), 64, 16, 4, "float32", None)


def test_a_config_and_options_together_are_refused(tiny_reader_dir):
    with pytest.raises(TypeError, match="either a ReaderConfig or options"):
        Reader(ReaderConfig(str(tiny_reader_dir)), dtype="int8")


@pytest.mark.parametrize(
    "options, message",
    [
        ({"threads": 0}, "threads must be positive or None, got 0"),
        ({"max_answer_tokens": 0}, "must be positive, got 384, 128 and 0"),
        ({"dtype": "fp16"}, "dtype must be float32, bfloat16 or int8, got 'fp16'"),
        ({"dtype": "int8", "device": "cuda"}, "runs on the CPU only, not on 'cuda'"),
    ],
)
def test_reader_config_checks_every_field(options, message):
    with pytest.raises(ValueError, match=message):
        ReaderConfig("models/some-reader", **options)
