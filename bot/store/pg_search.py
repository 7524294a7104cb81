"""The ranking SQL of `PostgresStore.search`: FTS5's BM25 from PostgreSQL's stored term statistics.

Two ways to rank, with the same scores:

- `postings_sql`, the usual one: when each phrase of the expressions is one word (the retriever's phrases are), the
  postings of the question's lexemes are read from the index of `passage_postings` and summed per passage in one
  aggregate. Only passages holding one of the rarest lexemes that every match must hold are scored (`driver`), so
  the commoner lexemes are looked up for those passages alone.
- `tsvector_sql`, for a phrase of several words: candidates through the GIN index on `passages.tsv`, each scored
  from its tsvector, a phrase by its rarest word (about 30 µs a candidate, 15x the postings' cost).

    sql, params = postings_sql(trees, {"ceo": "ceo", "kestrel": "kestrel"}, {"ceo": 900, "kestrel": 30}, 50_000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from bot.store.fts import And, Node, Not, Or, Phrase, phrases
from bot.store.pg_migrations import TS_CONFIG

__all__ = [
    "K1",
    "B",
    "TITLE_WEIGHT",
    "TEXT_WEIGHT",
    "WEIGHTED_F_SQL",
    "idf",
    "postings_sql",
    "postings_params",
    "tsvector_sql",
]

# FTS5's bm25() constants and qa-bot's column weights (bot.store.sqlite._BM25_WEIGHTS): title 0.5, text 1.0.
K1, B = 1.2, 0.75
TITLE_WEIGHT, TEXT_WEIGHT = 0.5, 1.0
# A lexeme's frequency in one passage, `u` a row of unnest(tsv): its occurrences weighted by column (A title, B
# text). Array functions, not a subquery over unnest(u.weights): 3x faster.
_TITLE_EXTRA = TITLE_WEIGHT - TEXT_WEIGHT
WEIGHTED_F_SQL = (
    f"({TEXT_WEIGHT} * cardinality(u.weights) + {_TITLE_EXTRA} * cardinality(array_positions(u.weights, 'A')))"
)
# The most distinct lexemes `postings_sql` ranks at once: each is a bit of a bigint.
MAX_POSTINGS_TERMS = 63


def idf(hits: int, n_passages: int) -> float:
    """FTS5's BM25 idf of a phrase found in `hits` of `n_passages` passages, with its floor for common ones."""
    value = math.log((n_passages - hits + 0.5) / (hits + 0.5))
    return value if value > 0 else 1e-6  # FTS5's floor for terms in more than half the rows


# Postings -------------------------------------------------------------------------------------------------------


def driver(node: Node, lexeme_of: Mapping[str, str | None], dfs: Mapping[str, int]) -> set[str]:
    """Lexemes one of which every passage matching `node` holds, the set with the fewest postings: an AND needs only
    its rarer side's. A phrase without a lexeme matches nothing, so it needs none."""
    if isinstance(node, Phrase):
        lexeme = lexeme_of.get(node.text)
        return {lexeme} if lexeme else set()
    left = driver(node.left, lexeme_of, dfs)
    if isinstance(node, Not):
        return left
    right = driver(node.right, lexeme_of, dfs)
    if isinstance(node, Or):
        return left | right
    return min(left, right, key=lambda lexemes: (sum(dfs.get(lexeme, 0) for lexeme in lexemes), sorted(lexemes)))


def _match_sql(node: Node, lexeme_of: Mapping[str, str | None], bits: Mapping[str, int]) -> str:
    """Whether a passage whose lexemes are the bits of `s.mask` matches `node`."""
    if isinstance(node, Phrase):
        lexeme = lexeme_of.get(node.text)
        return f"(s.mask & {bits[lexeme]}) <> 0" if lexeme else "false"
    left, right = _match_sql(node.left, lexeme_of, bits), _match_sql(node.right, lexeme_of, bits)
    if isinstance(node, And):
        return f"({left} and {right})"
    if isinstance(node, Or):
        return f"({left} or {right})"
    assert isinstance(node, Not)
    return f"({left} and not {right})"


def postings_sql(
    trees: Sequence[Node],
    lexeme_of: Mapping[str, str | None],
    dfs: Mapping[str, int],
    n_passages: int,
    *,
    collections: bool = False,
) -> tuple[str, dict[str, object]] | None:
    """The ranking query over `passage_postings` for expressions whose every phrase is one lexeme or none, and its
    parameters but those of `postings_params`, %(limit)s and, with `collections`, %(collections)s. None when no
    passage can match.

    Rows are (id, rank): each passage matching an expression, ranked by the best of those expressions' BM25 (FTS5's
    sign: lower is better), best first. Each expression scores a passage over its own phrases, a phrase twice
    counting twice, as FTS5's bm25() does.

    :param lexeme_of: each phrase's lexeme (None when it has none); a phrase of several lexemes cannot be ranked
        here (use `tsvector_sql`).
    :param dfs: how many passages hold each lexeme.
    """
    terms = sorted({lexeme for tree in trees for text in phrases(tree) if (lexeme := lexeme_of.get(text))})
    drivers = sorted(set().union(*(driver(tree, lexeme_of, dfs) for tree in trees)))
    if not drivers:
        return None
    if len(terms) > MAX_POSTINGS_TERMS:
        raise ValueError(f"at most {MAX_POSTINGS_TERMS} distinct lexemes, got {len(terms)}")
    bits = {lexeme: 1 << index for index, lexeme in enumerate(terms)}
    params: dict[str, object] = {
        "q_lexeme": terms,
        "q_idf": [idf(dfs.get(lexeme, 0), n_passages) for lexeme in terms],
        "q_bit": [bits[lexeme] for lexeme in terms],
        "drivers": drivers,
    }
    for index, tree in enumerate(trees):
        counted = [lexeme_of.get(text) for text in phrases(tree)]  # a phrase twice in an expression counts twice
        params[f"q_w{index}"] = [float(counted.count(lexeme)) for lexeme in terms]
    weights = ", ".join(f"%(q_w{index})s::float8[]" for index in range(len(trees)))
    columns = ", ".join(f"w{index}" for index in range(len(trees)))
    sums = ", ".join(f"sum(q.w{index} * x.score) as s{index}" for index in range(len(trees)))
    # The best expression a passage matches (least() skips the nulls of those it does not match).
    rank = (
        "least("
        + ", ".join(
            f"case when {_match_sql(tree, lexeme_of, bits)} then -s.s{index} end" for index, tree in enumerate(trees)
        )
        + ")"
    )
    others = [lexeme for lexeme in terms if lexeme not in set(drivers)]
    found = "select passage_id, lexeme, f, n_tokens from passage_postings where lexeme = any(%(drivers)s)"
    if others:  # the commoner lexemes, for the passages holding a driver only
        params["others"] = others
        found += (
            "\n  union all\n  select pp.passage_id, pp.lexeme, pp.f, pp.n_tokens from passage_postings pp\n"
            "  where pp.lexeme = any(%(others)s) and pp.passage_id in (\n"
            "    select passage_id from passage_postings where lexeme = any(%(drivers)s))"
        )
    # BM25 of one posting, all in float8: idf (k1 + 1) f / (f + k1 (1 - b) + k1 b dl / avgdl), the constants
    # folded into %(norm_base)s and %(norm_per_token)s (`postings_params`).
    sql = (
        f"with q (lexeme, idf, bit, {columns}) as (\n"
        f"  select * from unnest(%(q_lexeme)s::text[], %(q_idf)s::float8[], %(q_bit)s::int8[], {weights})\n"
        "),\n"
        f"found as (\n  {found}\n),\n"
        "s as (\n"
        f"  select found.passage_id as id, bit_or(q.bit) as mask, {sums}\n"
        "  from found join q on q.lexeme = found.lexeme,\n"
        f"  lateral (select q.idf * {K1 + 1}::float8 * found.f\n"
        "    / (found.f + %(norm_base)s::float8 + %(norm_per_token)s::float8 * found.n_tokens)) as x (score)\n"
        "  group by found.passage_id\n"
        "),\n"
        f"ranked as (select s.id, {rank} as rank from s)\n"
    )
    return sql + _best_sql(collections), params


def postings_params(avgdl: float) -> dict[str, float]:
    """The length normalisation of `postings_sql` for an average passage length: k1 (1 - b) and k1 b / avgdl."""
    return {"norm_base": K1 * (1 - B), "norm_per_token": K1 * B / avgdl}


def _best_sql(collections: bool) -> str:
    if not collections:
        return "select id, rank from ranked where rank is not null order by rank, id limit %(limit)s"
    # The matches in rank order, then each one's collection tested in that order until `limit` pass: a scope that
    # holds most passages looks up a few instead of every match.
    return (
        "select r.id, r.rank from (\n"
        "  select id, rank from ranked where rank is not null order by rank, id offset 0\n"
        ") r\n"
        "where exists (\n"
        "  select 1 from passages p join articles a on a.id = p.article_id\n"
        "  where p.id = r.id and a.collection = any(%(collections)s)\n"
        ")\n"
        "order by r.rank, r.id limit %(limit)s"
    )


# Tsvectors ------------------------------------------------------------------------------------------------------


def tsquery_sql(node: Node, params: list[object]) -> str:
    """The tsquery for an FTS5 tree: each phrase through `phraseto_tsquery`, so it is tokenized like the index."""
    if isinstance(node, Phrase):
        params.append(node.text)
        return f"phraseto_tsquery('{TS_CONFIG}', %s)"
    left, right = tsquery_sql(node.left, params), tsquery_sql(node.right, params)
    if isinstance(node, And):
        return f"({left} && {right})"
    if isinstance(node, Or):
        return f"({left} || {right})"
    assert isinstance(node, Not)
    return f"({left} && !!{right})"


# BM25 of one passage `p` for the phrases in %(q_lexeme)s / %(q_phrase)s / %(q_idf)s (one row per lexeme of a
# phrase): a phrase's frequency is its rarest lexeme's, each occurrence weighted by its column (A title, B text).
_SCORE_SQL = f"""-(
  select coalesce(sum(t.idf * t.f * {K1 + 1} / (t.f + {K1} * ({1 - B} + {B} * p.n_tokens / %(avgdl)s))), 0)
  from (
    select q.phrase, max(q.idf) as idf, min(coalesce(u.f, 0)) as f
    from unnest(%(q_lexeme)s::text[], %(q_phrase)s::int[], %(q_idf)s::float8[]) as q(lexeme, phrase, idf)
    left join lateral (
      select {WEIGHTED_F_SQL} as f
      from unnest(p.tsv) u where u.lexeme = q.lexeme
    ) u on true
    group by q.phrase
  ) t where t.f > 0
)"""


def tsvector_sql(tree: Node, *, collections: bool = False) -> tuple[str, list[object]]:
    """The ranking query of one parsed expression through the GIN index, each candidate scored from its tsvector,
    and its tsquery's phrases; takes %(avgdl)s, %(q_lexeme)s, %(q_phrase)s, %(q_idf)s, %(limit)s and, with
    `collections`, %(collections)s. Rows are (id, rank), best first."""
    params: list[object] = []
    tsquery = tsquery_sql(tree, params)
    # psycopg takes one placeholder style per query: the tsquery's phrases become named ones too
    named = tsquery
    for index in range(len(params)):
        named = named.replace("%s", f"%(phrase_{index})s", 1)
    allowed = " join articles a on a.id = p.article_id and a.collection = any(%(collections)s)" if collections else ""
    sql = (
        f"select p.id, {_SCORE_SQL} as rank\nfrom passages p{allowed}\n"
        f"where p.tsv @@ {named}\norder by rank, p.id limit %(limit)s"
    )
    return sql, params
