"""The app's listeners by kind: events (mentions, DMs, edits, deletions), slash commands and button actions.

register_all(app, ListenerKit(settings, service, state, work, gate=gate))
"""

from __future__ import annotations

from slack_bolt import App

from bot.slack.listeners.actions import ActionListeners
from bot.slack.listeners.commands import CommandListeners
from bot.slack.listeners.events import EventListeners
from bot.slack.listeners.shared import ListenerKit

__all__ = ["ListenerKit", "register_all"]


def register_all(app: App, kit: ListenerKit) -> None:
    """Register every listener of qa-bot on `app`."""
    for listeners in (EventListeners(kit), CommandListeners(kit), ActionListeners(kit)):
        listeners.register(app)
