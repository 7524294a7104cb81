"""Collections and the access file: parsing and its errors, the store's filter inside its SQL, moving articles."""

from __future__ import annotations

import pytest

from bot.core.access import AccessPolicy, UserRef, load_access_file, parse_access_text, parse_user_ref
from bot.core.records import Article
from bot.core.retrieve import Retriever
from bot.errors import ConfigError
from bot.store import SQLiteStore, StoredOutcome

ACCESS_YAML = """\
collections:
  general: {channels: "*", dms: true}
  legal:   {channels: [C0LEGAL1], dms: [U0ALICE, T0001:U0BOB]}
"""

MEMO = Article(
    title="Board memo on the Kestrel merger",
    body="The board approved the Kestrel merger on Monday. The merger price is 40 million dollars.",
    source="memos/kestrel.txt",
    collection="legal",
)
NEWS = Article(
    title="Harbour ferry prices",
    body="The harbour ferry will cost 12 dollars from May. Captain Ingrid Holm runs the ferry.",
    source="news/ferry.txt",
)


def test_the_access_file_gives_each_channel_and_dm_its_collections():
    policy = parse_access_text(ACCESS_YAML)
    assert (
        policy.for_channel("C0LEGAL1"),
        policy.for_channel("C0GENERAL"),
        policy.for_dm("U0ALICE", team="T0001"),
        policy.for_dm("U0BOB", team="T0001"),
        policy.for_dm("U0BOB", team="T0OTHER"),
        policy.for_dm("U0CAROL", team="T0001"),
    ) == (
        {"general", "legal"},
        {"general"},
        {"general", "legal"},
        {"general", "legal"},
        {"general"},
        {"general"},
    )


def test_user_refs_take_a_user_or_a_team_and_user():
    assert (parse_user_ref("U0ALICE"), parse_user_ref("T0001:U0BOB")) == (UserRef("U0ALICE"), UserRef("U0BOB", "T0001"))
    with pytest.raises(ValueError, match="'alice' is not a Slack user id"):
        parse_user_ref("alice")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("collections:\n  legal: {channels: [C0LEGAL1\n", "line 3: not valid YAML"),
        ("collections:\n  general: {channels: '*'}\n  Legal!: {channels: [C0LEGAL1]}\n", "line 3: 'Legal!' is not"),
        (
            "collections:\n  legal: {channels: ['#legal']}\n",
            "line 2: '#legal' in channels of 'legal' is not a channel id (write C0123ABC, not #name)",
        ),
        (
            "collections:\n  legal:\n    channels: ['*', C0LEGAL1]\n",
            "line 3: channels of 'legal' mixes \"*\" with a list",
        ),
        ("collections:\n  legal: {channels: C0LEGAL1}\n", "line 2: channels of 'legal' must be \"*\" or a list"),
        ("collections:\n  legal: {dms: [alice]}\n", "line 2: in dms of 'legal': 'alice' is not a Slack user id"),
        ("collections:\n  a: {}\n  a: {}\n", "line 3: collection 'a' is named twice"),
        ("collection:\n  a: {}\n", "line 1: unknown key 'collection'"),
    ],
)
def test_a_bad_access_file_is_one_line_naming_file_line_and_problem(text, message):
    with pytest.raises(ConfigError) as error:
        parse_access_text(text, path="access.yaml")
    assert str(error.value).startswith(f"Bad access file access.yaml, {message}")
    assert "\n" not in str(error.value)


def test_an_access_file_naming_a_collection_without_articles_is_refused(tmp_path):
    path = tmp_path / "access.yaml"
    path.write_text(ACCESS_YAML.replace("legal:  ", "legl:   "), encoding="utf-8")
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(MEMO)
    with pytest.raises(ConfigError, match=r"^Bad access file .*access\.yaml, line 3: unknown collection 'legl' "):
        load_access_file(path).check_stored(store.collection_names())
    load_access_file(path).check_stored(["legl"])  # once it has articles, it is known


def test_a_missing_access_file_is_an_error_not_everyone_sees_everything(tmp_path):
    with pytest.raises(ConfigError, match=r"^Bad access file .*nope\.yaml: cannot read it"):
        load_access_file(tmp_path / "nope.yaml")


@pytest.fixture
def scoped_store(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    store.add_article(NEWS)
    store.add_article(MEMO)
    yield store
    store.close()


def test_search_filters_by_collection_inside_the_sql(scoped_store):
    def titles(collections):
        return [p.article.title for p in scoped_store.search('"merger" OR "ferry"', limit=5, collections=collections)]

    assert (sorted(titles(None)), titles({"general"}), titles({"legal"}), titles(set())) == (
        sorted([MEMO.title, NEWS.title]),
        [NEWS.title],
        [MEMO.title],
        [],
    )
    assert "sa.collection in (:collection_0, :collection_1)" in scoped_store.search_sql(collections=2)


def test_a_forbidden_passage_never_takes_an_allowed_ones_place(tmp_path):
    store = SQLiteStore(tmp_path / "qa.db")
    for n in range(8):  # eight better-matching legal passages ahead of the one general article
        store.add_article(
            Article(
                title=f"Merger {n}", body=f"Merger merger merger number {n}.", source=f"{n}.txt", collection="legal"
            )
        )
    store.add_article(Article(title="Merger news", body="A merger was rumoured today.", source="news.txt"))
    found = Retriever(store, top_k=3).run("merger?", collections={"general"})
    assert [p.article.title for p in found] == ["Merger news"]


def test_a_scope_ranks_the_matches_first_and_tests_their_collection_in_rank_order(tmp_path):
    """The scoped ranking sorts the matches, then tests collections one by one until `limit` pass (a co-routine,
    not flattened into a test of every match); a scope of every collection gives the unscoped results."""
    store = SQLiteStore(tmp_path / "qa.db")
    for n in range(12):
        collection = ("general", "legal", "sales")[n % 3]
        body = f"The merger number {n} was signed. " + "Merger talks went on. " * (n % 4)
        store.add_article(Article(title=f"Deal {n}", body=body, source=f"{n}.txt", collection=collection))
    for query in ('"merger"', '"signed" OR "talks"', '"talks" AND ("merger")'):
        unscoped = [(p.id, p.bm25) for p in store.search(query, limit=4)]
        assert [(p.id, p.bm25) for p in store.search(query, limit=4, collections={"general", "legal", "sales"})] == (
            unscoped
        )
        every = store.search(query, limit=50)
        legal = [(p.id, p.bm25) for p in every if p.article.collection == "legal"][:2]
        assert legal and [(p.id, p.bm25) for p in store.search(query, limit=2, collections={"legal"})] == legal
    plan = [
        row[3]
        for row in store.db.execute(
            "explain query plan " + store.search_sql(collections=1),
            {"query": '"merger"', "limit": 2, "collection_0": "legal"},
        )
    ]
    assert plan.index("CO-ROUTINE f") < plan.index("SCAN f") < plan.index("CORRELATED SCALAR SUBQUERY 2")


def test_reingesting_under_another_collection_moves_the_article(scoped_store):
    moved = scoped_store.add_article(MEMO.__class__(**{**MEMO.__dict__, "collection": "general"}))
    assert moved == StoredOutcome("unchanged", 2, MEMO.title, moved_from="legal", collection="general")
    assert scoped_store.collection_names() == ["general"]
    again = scoped_store.add_article(MEMO.__class__(**{**MEMO.__dict__, "collection": "general"}))
    assert again.moved_from is None


def test_the_policy_lists_its_collections():
    assert AccessPolicy([]).names == frozenset()
    assert parse_access_text(ACCESS_YAML).names == {"general", "legal"}
