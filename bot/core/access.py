"""Who may read which collection of articles: the access file (`QABOT_ACCESS_FILE`, YAML) and its rules.

    policy = load_access_file("access.yaml")
    policy.for_channel("C0LEGAL1")        # frozenset({"general", "legal"})
    policy.for_dm("U0ALICE", team="T1")   # the collections U0ALICE may read in a DM with the bot

The file names every collection and where it may be read:

    collections:
      general: {channels: "*", dms: true}
      legal:   {channels: [C0LEGAL1], dms: [U0ALICE, U0BOB]}

`channels` is `"*"` (every channel) or a list of channel ids; `dms` is `true` (everyone), `false` (nobody) or a
list of user ids (`U123`, or `T123:U123` to name the workspace too). A channel the file does not name reads only
the collections whose `channels` is `"*"`. Anything the file does not say is refused, never allowed: a file that
cannot be read is an error, not "everyone sees everything".
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.errors import ConfigError
from bot.store.base import Store

__all__ = [
    "DEFAULT_COLLECTION",
    "AccessPolicy",
    "CollectionRule",
    "UserRef",
    "check_collection_name",
    "load_access_file",
    "load_access_policy",
    "parse_access_text",
    "parse_user_ref",
]

DEFAULT_COLLECTION = "general"

_COLLECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_TEAM_ID = re.compile(r"^[TE][A-Z0-9]{2,}$")


@dataclass(frozen=True)
class UserRef:
    """A Slack user, optionally with the workspace (`T123:U123`); `team=None` means "the allowed workspace"."""

    user: str
    team: str | None = None

    def matches(self, user: str, team: str | None) -> bool:
        """Same user, and the same workspace when both sides name one."""
        return self.user == user and (self.team is None or team is None or self.team == team)


def parse_user_ref(text: str) -> UserRef:
    """`U123` or `T123:U123` as a `UserRef`.

        >>> parse_user_ref("T0001:U0ALICE")
        UserRef(user='U0ALICE', team='T0001')

    :raises ValueError: when the text is neither form.
    """
    team, _, user = text.strip().rpartition(":")
    if not _USER_ID.match(user) or (team and not _TEAM_ID.match(team)):
        raise ValueError(f"{text!r} is not a Slack user id (U0123ABC) or team:user pair (T0123ABC:U0123ABC)")
    return UserRef(user=user, team=team or None)


def check_collection_name(name: str) -> str:
    """The name, when it is a valid collection name (lower-case letters, digits, `-` and `_`).

    :raises ValueError: naming the rule.
    """
    if not _COLLECTION_NAME.match(name):
        raise ValueError(
            f"{name!r} is not a collection name: use lower-case letters, digits, '-' and '_' (e.g. legal, board-2024)"
        )
    return name


@dataclass(frozen=True)
class CollectionRule:
    """Where one collection may be read: `channels` is None for every channel; `dms` is True, False or users."""

    name: str
    channels: frozenset[str] | None
    dms: bool | tuple[UserRef, ...]
    line: int = 0  # where the file names it, for error messages


class AccessPolicy:
    """The rules of an access file: which collections a channel, or a user's DMs with the bot, may read.

    :param rules: one rule per collection.
    :param path: the file they came from (for messages).
    """

    def __init__(self, rules: Iterable[CollectionRule], *, path: str = "the access file") -> None:
        self.rules = {rule.name: rule for rule in rules}
        self.path = path

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self.rules)

    def for_channel(self, channel: str) -> frozenset[str]:
        """The collections a question in `channel` may read (a channel not named: only the `"*"` ones)."""
        return frozenset(name for name, rule in self.rules.items() if rule.channels is None or channel in rule.channels)

    def for_dm(self, user: str, *, team: str | None = None) -> frozenset[str]:
        """The collections `user` may read in a DM with the bot (or with `qa-bot ask --user`)."""
        return frozenset(
            name
            for name, rule in self.rules.items()
            if rule.dms is True or (not isinstance(rule.dms, bool) and any(r.matches(user, team) for r in rule.dms))
        )

    def check_stored(self, stored: Iterable[str]) -> None:
        """Refuse a file naming a collection that no stored article belongs to (a typo would hide articles).

        `general` is always known. :raises ConfigError: naming the file, the line and the collection.
        """
        known = set(stored) | {DEFAULT_COLLECTION}
        for rule in self.rules.values():
            if rule.name not in known:
                raise ConfigError(
                    f"Bad access file {self.path}, line {rule.line}: unknown collection {rule.name!r} (stored "
                    f"collections: {', '.join(sorted(known))}). Ingest into it first: qa-bot ingest --collection "
                    f"{rule.name} PATH."
                )


def load_access_policy(path: str | Path | None, store: Store) -> AccessPolicy | None:
    """The rules of the access file at `path` (`QABOT_ACCESS_FILE`), checked against the collections in `store`;
    None without a file (everything is read everywhere, as before collections).

    :raises ConfigError: one line naming the file, the line and the problem.
    """
    if path is None:
        return None
    policy = load_access_file(path)
    policy.check_stored(store.collection_names())
    return policy


def load_access_file(path: str | Path) -> AccessPolicy:
    """Read and check an access file.

    :raises ConfigError: in one line naming the file, the line and the problem, when the file cannot be read,
        does not parse, or says something that cannot be right.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Bad access file {path}: cannot read it ({exc}). Check QABOT_ACCESS_FILE.") from exc
    return parse_access_text(text, path=str(path))


def parse_access_text(text: str, *, path: str = "the access file") -> AccessPolicy:
    """The policy written in `text` (YAML); see the module docstring for the format.

    :raises ConfigError: one line naming `path`, the line and the problem.
    """
    import yaml

    def fail(node_or_line: object, problem: str) -> ConfigError:
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1  # type: ignore[attr-defined]
        return ConfigError(f"Bad access file {path}, line {line}: {problem}.")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise fail(mark.line + 1 if mark else 1, f"not valid YAML ({problem})") from exc
    if not isinstance(root, yaml.MappingNode):
        raise fail(root.start_mark.line + 1 if root else 1, "expected a mapping with a 'collections' key")
    collections_node = None
    for key, value in root.value:
        if key.value != "collections":
            raise fail(key, f"unknown key {key.value!r} (only 'collections' is allowed)")
        collections_node = value
    if not isinstance(collections_node, yaml.MappingNode) or not collections_node.value:
        raise fail(collections_node or root, "'collections' must map each collection name to its rule")
    rules: list[CollectionRule] = []
    for key, value in collections_node.value:
        name = str(key.value)
        try:
            check_collection_name(name)
        except ValueError as exc:
            raise fail(key, str(exc)) from None
        if any(rule.name == name for rule in rules):
            raise fail(key, f"collection {name!r} is named twice")
        rules.append(_parse_rule(name, value, key.start_mark.line + 1, fail))
    return AccessPolicy(rules, path=path)


def _parse_rule(name: str, node, line: int, fail) -> CollectionRule:
    import yaml

    if not isinstance(node, yaml.MappingNode):
        raise fail(node, f"collection {name!r} needs {{channels: ..., dms: ...}}")
    fields = {}
    for key, value in node.value:
        if key.value not in ("channels", "dms"):
            raise fail(key, f"unknown key {key.value!r} in collection {name!r} (use channels and dms)")
        fields[key.value] = value
    channels: frozenset[str] | None = frozenset()
    channels_node = fields.get("channels")
    if isinstance(channels_node, yaml.ScalarNode) and channels_node.value == "*":
        channels = None
    elif isinstance(channels_node, yaml.SequenceNode):
        found = []
        for item in channels_node.value:
            value = item.value if isinstance(item, yaml.ScalarNode) else None
            if value == "*":
                raise fail(item, f'channels of {name!r} mixes "*" with a list; write either "*" or channel ids')
            if not isinstance(value, str) or not _CHANNEL_ID.match(value):
                raise fail(item, f"{value!r} in channels of {name!r} is not a channel id (write C0123ABC, not #name)")
            found.append(value)
        channels = frozenset(found)
    elif channels_node is not None:  # a single id or name as a string: "C0LEGAL1" reads like "*" gone wrong
        raise fail(channels_node, f'channels of {name!r} must be "*" or a list of channel ids, e.g. [C0LEGAL1]')
    dms: bool | tuple[UserRef, ...] = False
    dms_node = fields.get("dms")
    if isinstance(dms_node, yaml.ScalarNode) and dms_node.value.lower() in ("true", "false"):
        dms = dms_node.value.lower() == "true"
    elif isinstance(dms_node, yaml.SequenceNode):
        users = []
        for item in dms_node.value:
            try:
                users.append(parse_user_ref(item.value if isinstance(item, yaml.ScalarNode) else ""))
            except ValueError as exc:
                raise fail(item, f"in dms of {name!r}: {exc}") from None
        dms = tuple(users)
    elif dms_node is not None:
        raise fail(dms_node, f"dms of {name!r} must be true, false or a list of user ids, e.g. [U0ALICE]")
    return CollectionRule(name=name, channels=channels, dms=dms, line=line)
