"""Block Kit rendering: whole messages compared as values, and the escaping that keeps quotes from pinging."""

from __future__ import annotations

import json
import re

import pytest

from bot.core import messages
from bot.core.records import Answer, ArticleRef, Citation
from bot.slack.blocks import (
    answer_message,
    error_message,
    highlighted_quote,
    ingest_failure_message,
    ingest_report_message,
    notice,
    parse_feedback_value,
    title_link,
)
from bot.slack.escape import escape_slack, unescape_slack

REF = ArticleRef(
    id=7,
    title="Rosoboronexport leadership",
    source="newswire",
    url="https://example.com/news/rosoboronexport",
    published_at="2024-03-01",
)
OTHER = ArticleRef(id=8, title="Arms exports overview", source="reports/exports.txt")


def _citation(article: ArticleRef, sentence: str, answer: str) -> Citation:
    start = sentence.index(answer)
    return Citation(
        article=article, sentence=sentence, sentence_start=100, answer_start=start, answer_end=start + len(answer)
    )


def _answer(
    text: str, sentence: str, *, article: ArticleRef = REF, score: float = 0.9, alternatives: tuple[Answer, ...] = ()
) -> Answer:
    return Answer(
        question="Who is the CEO of Rosoboronexport?",
        text=text,
        score=score,
        citation=_citation(article, sentence, text),
        alternatives=alternatives,
        searched=(REF.title, OTHER.title),
    )


def test_answer_message_is_bold_answer_highlighted_quote_source_alternative_and_feedback():
    alternative = _answer("Chemezov", "Rostec chief Sergey Chemezov oversees it.", article=OTHER, score=0.6)
    answer = _answer(
        "Alexander Mikheev", "Alexander Mikheev is the CEO of Rosoboronexport.", alternatives=(alternative,)
    )
    assert answer_message(answer, answer_id="a1") == {
        "text": "Alexander Mikheev — “Alexander Mikheev is the CEO of Rosoboronexport.” "
        "(Rosoboronexport leadership, confidence 90%)",
        "blocks": [
            {
                "type": "section",
                "block_id": "answer",
                "text": {
                    "type": "mrkdwn",
                    "text": "*Alexander Mikheev*\n>*Alexander Mikheev* is the CEO of Rosoboronexport.",
                },
            },
            {
                "type": "context",
                "block_id": "source",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": "<https://example.com/news/rosoboronexport|Rosoboronexport leadership> — newswire, "
                        "2024-03-01 · confidence 90%",
                    }
                ],
            },
            {
                "type": "context",
                "block_id": "alternatives",
                "elements": [
                    {"type": "mrkdwn", "text": "Also possible: *Chemezov* — Arms exports overview (confidence 60%)"}
                ],
            },
            {
                "type": "actions",
                "block_id": "feedback",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "feedback_up",
                        "value": "up:a1",
                        "text": {"type": "plain_text", "text": ":+1: Helpful", "emoji": True},
                    },
                    {
                        "type": "button",
                        "action_id": "feedback_down",
                        "value": "down:a1",
                        "text": {"type": "plain_text", "text": ":-1: Not helpful", "emoji": True},
                    },
                ],
            },
        ],
    }


def test_an_unsure_answer_is_a_hedge_with_the_quote_and_its_source():
    tentative = _answer("Chemezov", "Rostec chief Sergey <!channel> Chemezov oversees it.", article=OTHER, score=0.4)
    answer = Answer(question=tentative.question, text=None, score=0.4, tentative=tentative, searched=(OTHER.title,))
    message = answer_message(answer, answer_id="a1")
    assert [b["block_id"] for b in message["blocks"]] == ["tentative", "source", "feedback"]
    assert message["blocks"][0]["text"]["text"] == (
        "I'm not sure. The closest I found:\n*Chemezov*\n>Rostec chief Sergey &lt;!channel&gt; *Chemezov* oversees it."
    )
    assert message["blocks"][1]["elements"][0]["text"] == "Arms exports overview — reports/exports.txt · confidence 40%"
    assert message["text"] == (
        "I'm not sure. Closest: Chemezov — “Rostec chief Sergey &lt;!channel&gt; Chemezov "
        "oversees it.” (Arms exports overview, confidence 40%)"
    )


def test_supporting_articles_and_disagreeing_ones_are_named_with_their_dates():
    newer = ArticleRef(id=9, title="Exports <update>", source="wire", published_at="2025-02-01")
    conflicting = (
        _answer("Ivanov", "Ivanov now runs it.", article=newer, score=0.8),
        _answer("Petrov", "Petrov runs it.", article=OTHER, score=0.7),
    )
    answer = Answer(
        question="Who runs it?",
        text="Mikheev",
        score=0.9,
        citation=_citation(REF, "Mikheev runs it.", "Mikheev"),
        supporting=(OTHER, newer),
        conflicting=conflicting,
    )
    blocks = {b["block_id"]: b for b in answer_message(answer, answer_id="a1")["blocks"]}
    assert blocks["supporting"]["elements"][0]["text"] == (
        "Also in 2 other articles: Arms exports overview, Exports &lt;update&gt;"
    )
    assert blocks["conflicting"]["elements"][0]["text"] == (
        "Other articles disagree (newest first):\n"
        "• *Ivanov* — Exports &lt;update&gt;, 2025-02-01 (confidence 80%)\n"
        "• *Petrov* — Arms exports overview (confidence 70%)"
    )


def test_at_most_two_alternatives_are_shown():
    alternatives = tuple(_answer(name, f"{name} runs it.", article=OTHER, score=0.5) for name in ("Ann", "Bob", "Cy"))
    message = answer_message(_answer("Mikheev", "Mikheev runs it.", alternatives=alternatives), answer_id="a1")
    [block] = [b for b in message["blocks"] if b["block_id"] == "alternatives"]
    assert block["elements"][0]["text"].count("Also possible") == 2


def test_shareable_answer_has_a_share_button_and_shared_answer_says_who_asked():
    answer = _answer("Mikheev", "Mikheev runs it.")
    ephemeral = answer_message(answer, answer_id="a1", shareable=True)
    assert ephemeral["blocks"][-1] == {
        "type": "actions",
        "block_id": "share",
        "elements": [
            {
                "type": "button",
                "action_id": "share_answer",
                "value": "a1",
                "style": "primary",
                "text": {"type": "plain_text", "text": "Share to channel", "emoji": True},
            }
        ],
    }
    shared = answer_message(answer, answer_id="a1", asked_by="U0001")
    assert shared["blocks"][0] == {
        "type": "context",
        "block_id": "asked_by",
        "elements": [{"type": "mrkdwn", "text": "<@U0001> asked: “Who is the CEO of Rosoboronexport?”"}],
    }
    assert [b["block_id"] for b in shared["blocks"]] == ["asked_by", "answer", "source", "feedback"]


def test_no_answer_lists_the_searched_titles_escaped():
    answer = Answer(question="What about <!here>?", text=None, score=0.1, searched=("A & B", "<@U123> notes"))
    assert answer_message(answer, answer_id="a1") == {
        "text": "I could not find a confident answer to “What about &lt;!here&gt;?”.\n"
        "I searched these articles:\n• A &amp; B\n• &lt;@U123&gt; notes",
        "blocks": [
            {
                "type": "section",
                "block_id": "no_answer",
                "text": {
                    "type": "mrkdwn",
                    "text": "I could not find a confident answer to “What about &lt;!here&gt;?”.\n"
                    "I searched these articles:\n• A &amp; B\n• &lt;@U123&gt; notes",
                },
            }
        ],
    }


def test_no_answer_when_nothing_matched_says_so():
    message = answer_message(Answer(question="Zzz?", text=None, score=0.0), answer_id="a1")
    assert message["text"] == (
        "I could not find a confident answer to “Zzz?”: no stored article contains the words of the question."
    )


def test_every_piece_of_article_and_user_text_is_escaped():
    evil = ArticleRef(
        id=1,
        title="<!channel> & <@U123>",
        source="<!everyone>",
        url="https://x.test/?a=1&b=<2>",
        published_at="<!here>",
    )
    sentence = "Ping <!channel> then <@U123|bob> & <https://evil.test|click> now."
    answer = Answer(
        question="<!subteam^S1> who?", text="<@U123|bob>", score=0.9, citation=_citation(evil, sentence, "<@U123|bob>")
    )
    link = "<https://x.test/?a=1&amp;b=&lt;2&gt;|&lt;!channel&gt; &amp; &lt;@U123&gt;>"
    for message, ours in (
        (answer_message(answer, answer_id="a1", asked_by="U0001"), ["<@U0001>", link]),
        (answer_message(answer, answer_id="a1", shareable=True), [link]),
    ):
        shown = json.dumps(message, ensure_ascii=False)
        # Our own markup is the only `<…>` left: the user who asked and the article link.
        assert re.findall(r"<[^>]*>", shown) == ours
        for raw in ("<!channel>", "<@U123", "<!everyone>", "<!here>", "<!subteam", "<https://evil"):
            assert raw not in shown
    quote = answer_message(answer, answer_id="a1")["blocks"][0]["text"]["text"]
    assert quote == (
        "*&lt;@U123|bob&gt;*\n>Ping &lt;!channel&gt; then *&lt;@U123|bob&gt;* &amp; "
        "&lt;https://evil.test|click&gt; now."
    )


@pytest.mark.parametrize(
    ("sentence", "start", "end", "expected"),
    [
        ("Alexander Mikheev is the CEO.", 10, 17, "Alexander *Mikheev* is the CEO."),
        ("Alexander Mikheev is the CEO.", 9, 18, "Alexander *Mikheev* is the CEO."),  # spaces move outside the bold
        ("The CEO is\nA & B.", 11, 16, "The CEO is *A &amp; B*."),
        ("Nothing here.", 3, 3, "Nothing here."),
    ],
)
def test_highlighted_quote_bolds_the_answer_inside_the_sentence(sentence, start, end, expected):
    citation = Citation(article=REF, sentence=sentence, sentence_start=0, answer_start=start, answer_end=end)
    assert highlighted_quote(citation) == expected


def test_long_sentences_are_shortened_around_the_answer():
    sentence = "word " * 400 + "Mikheev" + " word" * 400
    start = sentence.index("Mikheev")
    citation = Citation(article=REF, sentence=sentence, sentence_start=0, answer_start=start, answer_end=start + 7)
    quote = highlighted_quote(citation, max_chars=107)
    assert quote.startswith("…") and quote.endswith("…") and "*Mikheev*" in quote
    assert len(quote) <= 107 + 4


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?x=1&y=2", "<https://example.com/a?x=1&amp;y=2|A &amp; B>"),
        ("https://example.com/a|b", "<https://example.com/a%7Cb|A &amp; B>"),
        ("javascript:alert(1)", "A &amp; B"),
        (None, "A &amp; B"),
    ],
)
def test_title_link_only_links_http_urls(url, expected):
    assert title_link(ArticleRef(1, "A & B", "feed", url)) == expected


def test_notices_escape_everything():
    assert notice("Use /ingest <url> & co") == {
        "text": "Use /ingest &lt;url&gt; &amp; co",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Use /ingest &lt;url&gt; &amp; co"}}],
    }


def test_error_message_carries_the_reference():
    assert error_message("ab12cd34")["text"] == (
        "Sorry, something went wrong while answering (reference ab12cd34). The details are in the bot's log."
    )


def test_ingest_messages():
    assert ingest_report_message(title="Ferry <news>", source="Slack /ingest by U0ADMIN", status="updated")["text"] == (
        "Ingested “Ferry &lt;news&gt;” (Slack /ingest by U0ADMIN): 0 added, 1 updated, 0 unchanged."
    )
    assert ingest_failure_message(url="https://x.test/a", reason="HTTP 404")["text"] == (
        "Nothing was stored from https://x.test/a: HTTP 404"
    )
    assert ingest_failure_message(url=None, reason="empty")["text"] == (
        "Nothing was stored from the pasted text: empty"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("up:a1", ("up", "a1")), ("down:a1", ("down", "a1")), ("up", ("up", None)), ("", ("", None))],
)
def test_feedback_values(value, expected):
    assert parse_feedback_value(value) == expected


@pytest.mark.parametrize("name", [n for n in messages.template_names() if n.startswith("slack_")])
def test_every_slack_template_renders(name):
    rendered = messages.render(name, **{field: "x" for field in messages.placeholders(name)})
    assert rendered.strip() and "{" not in rendered


def test_escaping_turns_chat_markup_into_plain_text():
    assert (
        escape_slack("<@U123> & <!channel> <http://x|y>") == "&lt;@U123&gt; &amp; &lt;!channel&gt; &lt;http://x|y&gt;"
    )


def test_unescaping_restores_what_the_user_typed():
    assert unescape_slack(escape_slack("a <b> & c &amp; d")) == "a <b> & c &amp; d"


# Slack's size limits -------------------------------------------------------------------------------------------


def _texts(message: dict) -> list[tuple[str, str]]:
    """(block type, text) for every text a message's blocks hold."""
    found = []
    for block in message["blocks"]:
        if block["type"] == "section":
            found.append(("section", block["text"]["text"]))
        elif block["type"] == "context":
            found.extend(("context", element["text"]) for element in block["elements"])
    return found


def test_long_titles_questions_and_lists_are_cut_to_slack_limits_with_the_whole_text_in_the_fallback():
    huge = ArticleRef(id=9, title="Mikheev & co " * 400, source="feed " * 600, url="https://example.com/x")
    long_question = "Who is " + "really " * 700 + "the CEO?"
    answered = Answer(
        question=long_question,
        text="Alexander Mikheev",
        score=0.9,
        citation=_citation(huge, "Alexander Mikheev is the CEO. " * 20, "Alexander Mikheev"),
        supporting=tuple(ArticleRef(id=i, title="x" * 300, source="s") for i in range(30)),
    )
    unanswered = Answer(question=long_question, text=None, score=0.1, searched=tuple("t" * 200 for _ in range(40)))
    for message in (
        answer_message(answered, answer_id="a1"),
        answer_message(answered, answer_id="a1", shareable=True, asked_by="U1"),
        answer_message(unanswered, answer_id="a2"),
        notice("x" * 10_000),
    ):
        texts = _texts(message)
        limits = {"section": 3000, "context": 2000}
        assert [(kind, len(text) <= limits[kind]) for kind, text in texts] == [(kind, True) for kind, _ in texts]
        assert any(text.endswith("…") for _, text in texts)
        assert len(message["blocks"]) <= 50 and len(message["text"]) <= 12_000
        assert not re.search(r"&[a-z]*…|<[^>]*…", json.dumps(message, ensure_ascii=False))  # no half escape or link
    assert unescape_slack(answer_message(unanswered, answer_id="a2")["text"]).count("really") == 700
    assert escape_slack(" ".join(huge.title.split())) in answer_message(answered, answer_id="a1")["text"]
