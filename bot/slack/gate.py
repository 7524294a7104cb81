"""Who the app serves: the allowed workspaces (`QABOT_TEAM_IDS`), admins as (team, user) pairs, and which
collections a question may read where it was asked (`QABOT_ACCESS_FILE`).

    gate = Gate.from_settings(settings, bot_team_id="T0001", policy=load_access_policy(path, store))
    App(..., before_authorize=gate.only_allowed_teams)
    gate.is_admin("T0001", "U0ADMIN"); gate.collections_for(channel="C0LEGAL1", user="U1", team="T0001")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from slack_bolt import BoltResponse

from bot.core.access import AccessPolicy, UserRef, parse_user_ref
from bot.errors import ConfigError
from bot.settings import Settings

__all__ = ["Gate", "request_teams", "is_dm_channel"]

logger = logging.getLogger(__name__)


def is_dm_channel(channel: str) -> bool:
    """A direct message conversation (Slack's DM channel ids start with D)."""
    return channel.startswith("D")


def request_teams(body: dict) -> set[str]:
    """Every workspace a request names: the team it was sent for and, in Slack Connect channels, the asking user's
    (`user_team`, `source_team`) — for events, slash commands and button clicks.

    >>> sorted(request_teams({"team_id": "T1", "event": {"user_team": "T2"}}))
    ['T1', 'T2']
    """
    found = [body.get("team_id"), body.get("user_team_id")]
    team = body.get("team")
    found.append(team.get("id") if isinstance(team, dict) else team)
    user = body.get("user")
    if isinstance(user, dict):
        found.append(user.get("team_id"))
    event = body.get("event")
    if isinstance(event, dict):
        found += [event.get("team"), event.get("user_team"), event.get("source_team")]
        message = event.get("message")
        if isinstance(message, dict):
            found += [message.get("team"), message.get("user_team"), message.get("source_team")]
    return {team_id for team_id in found if isinstance(team_id, str) and team_id}


class Gate:
    """The allowed workspaces, the admins and the access policy of one running app.

    :param teams: team ids whose requests are served; everything else is acknowledged and ignored.
    :param admins: users allowed to /ingest; a bare `U123` is a user of the only allowed workspace.
    :param policy: who may read which collection; None reads everything everywhere (no access file).
    """

    def __init__(self, *, teams: Collection[str], admins: Collection[UserRef], policy: AccessPolicy | None) -> None:
        if not teams:
            raise ValueError("at least one team id is needed")
        self.teams = frozenset(teams)
        self.policy = policy
        home = next(iter(self.teams)) if len(self.teams) == 1 else None
        self.admins = frozenset((admin.team or home, admin.user) for admin in admins)

    @classmethod
    def from_settings(cls, settings: Settings, *, bot_team_id: str | None, policy: AccessPolicy | None) -> Gate:
        """The gate for `QABOT_TEAM_IDS` (else the bot token's team) and `QABOT_ADMIN_USER_IDS`.

        :raises ConfigError: when no workspace is known, or a bare admin id is ambiguous between several.
        """
        teams = settings.team_ids or ([bot_team_id] if bot_team_id else [])
        if not teams:
            raise ConfigError("Cannot tell which Slack workspace to serve: set QABOT_TEAM_IDS (T0123ABC,...).")
        admins = [parse_user_ref(entry) for entry in settings.admin_user_ids]
        bare = [admin.user for admin in admins if admin.team is None]
        if bare and len(teams) > 1:
            raise ConfigError(
                f"Invalid setting QABOT_ADMIN_USER_IDS: {bare[0]} names no workspace, and QABOT_TEAM_IDS allows "
                f"{len(teams)}; write it as T0123ABC:{bare[0]}."
            )
        return cls(teams=teams, admins=admins, policy=policy)

    def only_allowed_teams(self, body: dict, next: Callable[[], BoltResponse]) -> BoltResponse:
        """Bolt middleware, run before authorization: a request from (or by a user of) a workspace that is not
        allowed is acknowledged and ignored, with one warning naming the team id only."""
        if body.get("type") in ("url_verification", "ssl_check"):
            return next()
        teams = request_teams(body)
        foreign = sorted(teams - self.teams)
        if foreign or not teams:
            logger.warning("ignored request from a workspace not allowed team_id=%s", ",".join(foreign) or "none")
            return BoltResponse(status=200, body="")
        return next()

    def is_admin(self, team: str | None, user: str) -> bool:
        return (team, user) in self.admins

    def collections_for(self, *, channel: str, user: str, team: str | None) -> frozenset[str] | None:
        """What a question asked in `channel` by `user` may read: the asker's DM rights in a DM, else the channel's
        rules; None (everything) without an access file."""
        if self.policy is None:
            return None
        if is_dm_channel(channel):
            return self.policy.for_dm(user, team=team)
        return self.policy.for_channel(channel)

    def may_post_in(self, channel: str, collections: Collection[str]) -> bool:
        """Whether a message citing articles of `collections` may be shown to everyone in `channel`."""
        return self.policy is None or set(collections) <= self.policy.for_channel(channel)
