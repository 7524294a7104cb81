"""The app's listeners by kind: events (questions taken as jobs, deletions), slash commands and button actions.

register_all(app, kit, QuestionJobs(kit, client, wake=runner.wake))  # kit = ListenerKit(settings, service, ...)
"""

from __future__ import annotations

from slack_bolt import App

from bot.slack.listeners.actions import ActionListeners
from bot.slack.listeners.commands import CommandListeners
from bot.slack.listeners.events import EventListeners
from bot.slack.listeners.questions import QuestionJobs
from bot.slack.listeners.shared import ListenerKit

__all__ = ["ListenerKit", "register_all"]


def register_all(app: App, kit: ListenerKit, questions: QuestionJobs) -> None:
    """Register every listener of qa-bot on `app`; questions are taken as jobs through `questions`."""
    for listeners in (EventListeners(kit, questions), CommandListeners(kit), ActionListeners(kit)):
        listeners.register(app)
