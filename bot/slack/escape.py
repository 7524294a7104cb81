"""Slack's mrkdwn escaping: quoted article text and echoed user text never become markup."""

from __future__ import annotations

__all__ = ["escape_slack", "unescape_slack"]


def escape_slack(text: str) -> str:
    """Escape `&`, `<`, `>` so quoted text can never become a mention, a channel ping or a link in Slack.

    >>> escape_slack("for <!channel> & co")
    'for &lt;!channel&gt; &amp; co'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def unescape_slack(text: str) -> str:
    """Undo Slack's escaping of user text (`&lt;` → `<`), so it is stored and searched as typed.

    >>> unescape_slack("a &lt;b&gt; &amp;amp; c")
    'a <b> &amp; c'
    """
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
