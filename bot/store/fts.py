"""The FTS5 query expressions qa-bot writes (quoted phrases, AND, OR, NOT, parentheses), parsed into a tree so a
store without FTS5 (PostgreSQL) can run the same queries.

    >>> parse_fts('("ceo" OR "kestrel") AND ("year")')
    And(left=Or(left=Phrase(text='ceo'), right=Phrase(text='kestrel')), right=Phrase(text='year'))

Only that subset is understood: `NEAR`, column filters, `^` and prefix `*` are refused with a `ValueError`, like
any malformed expression.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Phrase", "And", "Or", "Not", "Node", "parse_fts", "phrases"]


@dataclass(frozen=True)
class Phrase:
    """A quoted string or a bare word: its words in order."""

    text: str


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """Rows matching `left` but not `right` (FTS5's binary NOT)."""

    left: Node
    right: Node


Node = Phrase | And | Or | Not

# A quoted string ("" inside is a quote), a bare word (FTS5: letters, digits, _, anything non-ASCII), or a symbol.
_TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([\w\u0080-\U0010ffff]+)|([()]))', re.UNICODE)


def _tokens(expression: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(expression):
        if expression[position:].strip() == "":
            break
        match = _TOKEN.match(expression, position)
        if not match:
            raise ValueError(f"fts5: syntax error near {expression[position:].strip()[:20]!r}")
        quoted, bare, symbol = match.groups()
        if quoted is not None:
            tokens.append(("phrase", quoted.replace('""', '"')))
        elif bare in ("AND", "OR", "NOT"):
            tokens.append(("op", bare))
        elif bare is not None:
            tokens.append(("phrase", bare))
        else:
            tokens.append(("symbol", symbol))
        position = match.end()
    return tokens


def parse_fts(expression: str) -> Node:
    """The tree of an FTS5 expression; precedence NOT over AND (written or implicit) over OR, as in FTS5.

    :raises ValueError: for anything outside the subset, or a malformed expression.
    """
    tokens = _tokens(expression)
    position = 0

    def peek() -> tuple[str, str] | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal position
        token = peek()
        if token is None:
            raise ValueError("fts5: syntax error near end of expression")
        position += 1
        return token

    def parse_or() -> Node:
        node = parse_and()
        while peek() == ("op", "OR"):
            take()
            node = Or(node, parse_and())
        return node

    def parse_and() -> Node:
        node = parse_not()
        while True:
            token = peek()
            if token == ("op", "AND"):
                take()
            elif token is None or token[0] == "op" or token == ("symbol", ")"):
                return node
            node = And(node, parse_not())  # an explicit AND, or two phrases side by side

    def parse_not() -> Node:
        node = parse_atom()
        while peek() == ("op", "NOT"):
            take()
            node = Not(node, parse_atom())
        return node

    def parse_atom() -> Node:
        kind, value = take()
        if kind == "phrase":
            return Phrase(value)
        if (kind, value) == ("symbol", "("):
            node = parse_or()
            if take() != ("symbol", ")"):
                raise ValueError("fts5: syntax error, ')' expected")
            return node
        raise ValueError(f"fts5: syntax error near {value!r}")

    if not tokens:
        raise ValueError("fts5: empty expression")
    tree = parse_or()
    if peek() is not None:
        raise ValueError(f"fts5: syntax error near {take()[1]!r}")
    return tree


def phrases(node: Node) -> list[str]:
    """The phrases of a tree, left to right (FTS5's bm25() sums over exactly these)."""
    if isinstance(node, Phrase):
        return [node.text]
    return phrases(node.left) + phrases(node.right)
