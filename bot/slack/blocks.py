"""Block Kit rendering: answers, "no confident answer", apologies, notices and ingest reports as Slack messages.

Pure functions from records to `{"text": fallback, "blocks": [...]}` dicts; no Slack client, no I/O. Wording comes
from prompts/. Every piece of article text or user text is escaped with `escape_slack` before it is placed
between our own mrkdwn markup, so a stored `<!channel>` shows as text and never pings anyone.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from bot.core import messages
from bot.core.records import Answer, ArticleRef, Citation
from bot.slack.escape import escape_slack

__all__ = [
    "report_message",
    "ACTION_FEEDBACK_UP",
    "ACTION_FEEDBACK_DOWN",
    "ACTION_SHARE",
    "ACTION_ADMIN_DELETE",
    "ACTION_ADMIN_CANCEL",
    "admin_list_message",
    "admin_delete_confirm_message",
    "answer_message",
    "error_message",
    "notice",
    "mrkdwn_notice",
    "ingest_report_message",
    "ingest_failure_message",
    "highlighted_quote",
    "title_link",
    "fit_mrkdwn",
    "feedback_value",
    "parse_feedback_value",
    "VOTES",
]

ACTION_FEEDBACK_UP = "feedback_up"
ACTION_FEEDBACK_DOWN = "feedback_down"
ACTION_SHARE = "share_answer"
ACTION_ADMIN_DELETE = "admin_delete"
ACTION_ADMIN_CANCEL = "admin_cancel"
VOTES = {"up": ":+1:", "down": ":-1:"}

MAX_QUOTE_CHARS = 1500  # a section's text may hold 3000 characters; escaping can make the quote longer
# Slack's limits (api.slack.com/reference/block-kit): a message over them is rejected whole, so the user would
# get an apology instead of the answer. Text past them is cut with "…"; the fallback `text` keeps it all (Slack
# truncates that field only past 40,000 characters).
MAX_SECTION_CHARS = 3000
MAX_CONTEXT_CHARS = 2000
MAX_BLOCKS = 50
MAX_FALLBACK_CHARS = 12000
ELLIPSIS = "…"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def fit_mrkdwn(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters with "…" at the end, never inside a `<link|label>` or an `&amp;`
    escape (half of one would show as garbage or break the markup).

    >>> fit_mrkdwn("see <https://example.com/a|the page> &amp; more", 12)
    'see …'
    """
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    amp = cut.rfind("&")
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + ELLIPSIS


def _section(text: str, *, block_id: str | None = None) -> dict:
    block = {"type": "section", "text": {"type": "mrkdwn", "text": fit_mrkdwn(text, MAX_SECTION_CHARS)}}
    if block_id:
        block["block_id"] = block_id
    return block


def _context(text: str, *, block_id: str | None = None) -> dict:
    block = {"type": "context", "elements": [{"type": "mrkdwn", "text": fit_mrkdwn(text, MAX_CONTEXT_CHARS)}]}
    if block_id:
        block["block_id"] = block_id
    return block


def _button(template: str, *, action_id: str, value: str, style: str | None = None) -> dict:
    button = {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": messages.render(template), "emoji": True},
    }
    if style:
        button["style"] = style
    return button


def _clip(text: str) -> str:
    return fit_mrkdwn(text, MAX_FALLBACK_CHARS)


def _message(text: str, blocks: list[dict]) -> dict:
    """A message within Slack's limits: the fallback text capped, at most `MAX_BLOCKS` blocks."""
    return {"text": _clip(text), "blocks": blocks[:MAX_BLOCKS]}


# Pieces -------------------------------------------------------------------------------------------------------


def title_link(article: ArticleRef) -> str:
    """The article title as mrkdwn: a `<url|title>` link when the article has an http(s) url, else plain text.

    >>> title_link(ArticleRef(1, "A & B", "feed", "https://example.com/a?x=1&y=2"))
    '<https://example.com/a?x=1&amp;y=2|A &amp; B>'
    """
    title = escape_slack(_one_line(article.title))
    url = (article.url or "").strip()
    parts = urlsplit(url) if url else None
    if not parts or parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
        return title
    # `|` and `>` would end the link early; `&` must be escaped inside the link too.
    safe_url = escape_slack(url).replace("|", "%7C")
    return f"<{safe_url}|{title}>"


def highlighted_quote(citation: Citation, *, max_chars: int = MAX_QUOTE_CHARS) -> str:
    """The cited sentence as mrkdwn with the answer in bold; each piece is escaped separately.

    A very long sentence is shortened around the answer with "…" so the block stays within Slack's limits.
    For the sentence "Sergey <b> leads it." with the answer at 0..6 this gives `*Sergey* &lt;b&gt; leads it.`
    """
    sentence = citation.sentence
    start = max(0, min(citation.answer_start, len(sentence)))
    end = max(start, min(citation.answer_end, len(sentence)))
    # Slack renders *bold* only when the asterisks touch the word: whitespace at the answer's edges moves out.
    while start < end and sentence[start].isspace():
        start += 1
    while end > start and sentence[end - 1].isspace():
        end -= 1
    before, middle, after = sentence[:start], sentence[start:end], sentence[end:]
    if len(sentence) > max_chars:
        room = max(0, max_chars - len(middle)) // 2
        if len(before) > room:
            before = ELLIPSIS + before[len(before) - room :]
        if len(after) > room:
            after = after[:room] + ELLIPSIS
    before, middle, after = _squash(before), _one_line(middle), _squash(after)
    if not middle:
        return escape_slack(_one_line(before + after))
    return f"{escape_slack(before)}*{escape_slack(middle)}*{escape_slack(after)}"


def _squash(text: str) -> str:
    """Runs of whitespace (newlines included) become one space; a space at either edge is kept."""
    return re.sub(r"\s+", " ", text)


def feedback_value(vote: str, answer_id: str) -> str:
    """The value of a feedback button: the vote and the answer it is about (`up:3f2a…`)."""
    return f"{vote}:{answer_id}"


def parse_feedback_value(value: str) -> tuple[str, str | None]:
    """(vote, answer id or None) from a feedback button value; a bare `up`/`down` carries no answer id."""
    vote, _, answer_id = (value or "").partition(":")
    return vote, (answer_id or None)


# Messages -----------------------------------------------------------------------------------------------------


def answer_message(answer: Answer, *, answer_id: str, shareable: bool = False, asked_by: str | None = None) -> dict:
    """An answer, an unsure tentative one, or "no confident answer" as a Slack message: `{"text", "blocks"}`.

        message = answer_message(service.answer(question), answer_id="3f2a9c")
        client.chat_postMessage(channel=channel, thread_ts=ts, **message)

    :param answer_id: put into the buttons, so a click can find the answer again.
    :param shareable: add the "Share to channel" button (ephemeral /ask answers).
    :param asked_by: a Slack user id; adds "<@user> asked: …" on top (answers shared from /ask).
    """
    blocks: list[dict] = []
    if asked_by:
        blocks.append(
            _context(
                messages.render(
                    "slack_asked_by", user=f"<@{asked_by}>", question=escape_slack(_one_line(answer.question))
                ),
                block_id="asked_by",
            )
        )
    if answer.notes:
        blocks.append(_context("\n".join(escape_slack(note) for note in answer.notes), block_id="notes"))
    tentative = answer.tentative if answer.tentative is not None and answer.tentative.citation else None
    if tentative is None and (not answer.is_answered or answer.citation is None):
        text = _no_answer_text(answer)
        blocks.append(_section(text, block_id="no_answer"))
        return _message(text, blocks)

    shown = tentative or answer
    citation = shown.citation
    assert citation is not None  # both cases above carry one
    answer_text = escape_slack(_one_line(shown.text or ""))
    template, block_id = ("slack_tentative", "tentative") if tentative else ("slack_answer", "answer")
    blocks.append(
        _section(messages.render(template, answer=answer_text, quote=highlighted_quote(citation)), block_id=block_id)
    )
    blocks.append(_context(_source_line(citation, shown.score), block_id="source"))
    alternatives = [alt for alt in answer.alternatives if alt.citation and alt.text][:2]
    if alternatives:
        lines = [
            messages.render(
                "slack_alternative",
                answer=escape_slack(_one_line(alt.text or "")),
                title=title_link(alt.citation.article) if alt.citation else "",
                confidence=messages.percent(alt.score),
            )
            for alt in alternatives
        ]
        blocks.append(_context("\n".join(lines), block_id="alternatives"))
    if answer.supporting:
        blocks.append(
            _context(
                messages.render(
                    "slack_supporting_one" if len(answer.supporting) == 1 else "slack_supporting_many",
                    count=len(answer.supporting),
                    titles=", ".join(title_link(a) for a in answer.supporting),
                ),
                block_id="supporting",
            )
        )
    conflicting = [(other, other.citation.article) for other in answer.conflicting if other.citation and other.text]
    if conflicting:
        lines = [messages.render("slack_conflicting_intro")] + [
            messages.render(
                "slack_conflicting",
                answer=escape_slack(_one_line(other.text or "")),
                title=title_link(article),
                date=f", {escape_slack(article.published_at)}" if article.published_at else "",
                confidence=messages.percent(other.score),
            )
            for other, article in conflicting
        ]
        blocks.append(_context("\n".join(lines), block_id="conflicting"))
    blocks.append(
        {
            "type": "actions",
            "block_id": "feedback",
            "elements": [
                _button("slack_button_helpful", action_id=ACTION_FEEDBACK_UP, value=feedback_value("up", answer_id)),
                _button(
                    "slack_button_not_helpful", action_id=ACTION_FEEDBACK_DOWN, value=feedback_value("down", answer_id)
                ),
            ],
        }
    )
    if shareable:
        blocks.append(
            {
                "type": "actions",
                "block_id": "share",
                "elements": [
                    _button("slack_button_share", action_id=ACTION_SHARE, value=answer_id, style="primary"),
                ],
            }
        )
    fallback = messages.render(
        "slack_tentative_fallback" if tentative else "slack_answer_fallback",
        answer=answer_text,
        sentence=escape_slack(_one_line(citation.sentence)),
        title=escape_slack(_one_line(citation.article.title)),
        confidence=messages.percent(shown.score),
    )
    return _message(fallback, blocks)


def _source_line(citation: Citation, score: float) -> str:
    article = citation.article
    date = f", {escape_slack(article.published_at)}" if article.published_at else ""
    if citation.page is not None:
        date += messages.render("page", page=citation.page)
    return messages.render(
        "slack_answer_source",
        title=title_link(article),
        source=escape_slack(article.source),
        date=date,
        confidence=messages.percent(score),
    )


def _no_answer_text(answer: Answer) -> str:
    question = escape_slack(_one_line(answer.question))
    if not answer.searched:
        return messages.render("slack_no_answer_nothing_searched", question=question)
    searched = "\n".join(f"• {escape_slack(_one_line(title))}" for title in answer.searched)
    return messages.render("slack_no_answer", question=question, searched=searched)


def error_message(reference: str) -> dict:
    """The apology shown when answering failed; `reference` finds the traceback in the log."""
    return notice(messages.render("error", reference=reference))


def notice(text: str) -> dict:
    """A short message from plain text (usage, refusals, help): the whole text is escaped, no markup survives."""
    escaped = escape_slack(text)
    return _message(escaped, [_section(escaped)])


def mrkdwn_notice(text: str) -> dict:
    """A short message whose mrkdwn is ours (values already escaped by the caller)."""
    return _message(text, [_section(text)])


def ingest_report_message(*, title: str, source: str, status: str, moved: tuple[str, str] | None = None) -> dict:
    """What `/ingest` did with one article: added, updated or unchanged, and `moved` (from, to) when storing it
    moved it to another collection."""
    counts = {"added": 0, "updated": 0, "unchanged": 0}
    counts[status] = 1
    text = messages.render("slack_ingest_report", title=_one_line(title), source=source, **counts)
    if moved:
        text += " " + messages.render("slack_ingest_moved", title=_one_line(title), before=moved[0], after=moved[1])
    return notice(text)


def ingest_failure_message(*, url: str | None, reason: str) -> dict:
    """Why `/ingest` stored nothing from a link (`url`) or from pasted text (`url=None`)."""
    if url:
        return notice(messages.render("slack_ingest_failed", url=url, reason=reason))
    return notice(messages.render("slack_ingest_text_failed", reason=reason))


# /qa-admin ----------------------------------------------------------------------------------------------------


def admin_list_message(rows: list[dict], *, query: str, more: bool) -> dict:
    """`/qa-admin list [text]`: one line per article (id, title linked when it has a url, source, date).

    :param rows: `ArticleRow.to_dict()` values, at most what one message should show.
    :param more: whether more articles matched than `rows` holds.
    """
    if not rows:
        template = "slack_admin_list_none" if query else "slack_admin_list_empty"
        return notice(messages.render(template, query=query))
    intro = escape_slack(
        messages.render("slack_admin_list_intro_query", query=query)
        if query
        else messages.render("slack_admin_list_intro")
    )
    lines = [
        messages.render(
            "slack_admin_list_row",
            id=row["id"],
            title=title_link(ArticleRef(row["id"], row["title"], row["source"], row["url"])),
            source=escape_slack(_one_line(row["source"])),
            date=f", {escape_slack(row['published_at'])}" if row.get("published_at") else "",
        )
        for row in rows
    ]
    if more:
        lines.append(escape_slack(messages.render("slack_admin_list_more")))
    text = "\n".join([intro, *lines])
    blocks, chunk = [_section(intro)], []  # type: list[dict], list[str]
    for line in lines:  # a section holds 3,000 characters: start a new one before it overflows
        if chunk and len("\n".join([*chunk, line])) > MAX_SECTION_CHARS:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(line)
    blocks.append(_section("\n".join(chunk)))
    return _message(text, blocks)


def admin_delete_confirm_message(row: dict) -> dict:
    """`/qa-admin delete`: what would be deleted, with a Delete button (value: the article id) and Cancel."""
    text = escape_slack(
        messages.render(
            "slack_admin_delete_confirm",
            id=row["id"],
            title=_one_line(row["title"]),
            source=_one_line(row["source"]),
            passages=row["passages"],
        )
    )
    buttons = {
        "type": "actions",
        "block_id": "admin_delete",
        "elements": [
            _button("slack_button_delete", action_id=ACTION_ADMIN_DELETE, value=str(row["id"]), style="danger"),
            _button("slack_button_cancel", action_id=ACTION_ADMIN_CANCEL, value=str(row["id"])),
        ],
    }
    return _message(text, [_section(text, block_id="admin_delete_question"), buttons])


def report_message(markdown: str) -> dict:
    """`/qa-report`: the Markdown of `render_markdown` as Slack blocks, headings in bold, tables preformatted
    (Slack draws no tables); every piece escaped, since questions and titles are user text."""
    blocks = []
    for chunk in markdown.split("\n\n"):
        chunk = chunk.strip()
        if not chunk:
            continue
        if chunk.startswith("#"):
            blocks.append(_section(f"*{escape_slack(chunk.lstrip('#').strip())}*"))
        elif chunk.startswith("|"):
            text = escape_slack(chunk).replace("```", "'''")
            blocks.append(_section(f"```\n{text[: MAX_SECTION_CHARS - 10]}\n```"))
        else:
            blocks.append(_section(escape_slack(chunk)))
    return _message(escape_slack(markdown), blocks)
