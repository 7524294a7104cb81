"""Questions per minute of one `qa-bot serve` replica against two, side by side (issue 16's target: two replicas
with one reader thread each answer at least 1.8 times the questions per minute of one, on 2 cores).

    .venv/bin/python scripts/replica_throughput.py                       # 3 rounds of each, prints the section
    .venv/bin/python scripts/replica_throughput.py --out BENCHMARKS.md   # also writes it between its markers

A dev tool run from the repository root: it imports `tests.procs` (real `python -m bot serve` subprocesses and
signed Slack events) and `tests.fakes.slack_api` (the loopback fake Slack Web API, which records when each call
arrived), so it needs the `make setup` environment and a PostgreSQL server.

The library is built once and reused: `--articles` benchmark articles from SQuAD (`bot.bench.corpus`) stored
through `PostgresStore.bulk()` in the database of `--db` (created when missing; its recipe and the questions,
`--questions` of them whose paragraph is stored, are kept in `--workdir`). A database that holds articles but no
matching recipe is refused, never rebuilt. Before each round the `slack_` tables of that database are emptied.

Each round starts fresh replicas (`QABOT_THREADS`, rate limit and `QABOT_MAX_PENDING` high enough not to refuse
anything), waits until they are healthy and have answered a few warm-up questions, then sends every question as a
signed mention, spread round-robin over the replicas, and times from the first mention sent to the last reply the
fake Slack API recorded. Rounds alternate: 1 replica, 2 replicas, 1, 2, ... Each round also checks that every
mention got exactly one reply (no apology, no "busy"), and notes the CPU time of the replicas, of their PostgreSQL
backends, of this process (the fake Slack API and the sender) and of everything else on the machine.

The machine may be shared: before each round the script waits until other processes use fewer than `--busy-cores`
cores, and a round during which they used more is shown struck out and run again (at most `--retries` times), since
two replicas need both cores and lose 10-30% to a process taking a fifth of one. Exits 1 when the target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: tests.procs and tests.fakes live in the repository
    sys.path.insert(0, str(REPO))

from tests.fakes.slack_api import FakeSlackAPI  # noqa: E402
from tests.procs import BotProcess, bot_env, mention_event, post_event  # noqa: E402

__all__ = [
    "Round",
    "Summary",
    "CpuSnapshot",
    "cpu_snapshot",
    "cpu_used",
    "main",
    "render_section",
    "summarise",
    "write_section",
]

TARGET_RATIO = 1.8
DEFAULT_DB = "postgresql://postgres@127.0.0.1:5432/qabot_throughput"
DEFAULT_SQUAD = "/work/shared/data/squad/train-v1.1.json.gz"
BEGIN, END = "<!-- replicas:begin -->", "<!-- replicas:end -->"
APOLOGY = "Sorry, something went wrong"  # how prompts/error.md begins
WARM_UP_PER_REPLICA = 2
RECIPE_VERSION = 1  # bump when the library or the question choice changes
SLACK_TABLES = ("slack_jobs", "slack_events", "slack_answers", "slack_replies", "slack_feedback", "slack_rate_limits")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# What one round measured -----------------------------------------------------------------------------------------


@dataclass
class Round:
    """One timed burst: `replicas` replicas answering `questions` mentions sent at once."""

    number: int
    replicas: int
    questions: int
    seconds: float
    answered_once: int  # mentions whose thread got exactly one reply
    missing: int = 0
    duplicated: int = 0
    failed: int = 0  # replies that were an apology or a "busy" notice
    per_replica: list[int] = field(default_factory=list)  # replies posted by each replica
    replica_cpu_s: float = 0.0
    postgres_cpu_s: float = 0.0
    bench_cpu_s: float = 0.0  # this process: the fake Slack API and the sender
    other_cpu_s: float = 0.0  # every other process on the machine
    load_before: float = 0.0  # 1-minute load average when the burst was sent
    counted: bool = True  # False: run again, other processes took the CPU meanwhile

    @property
    def other_cores(self) -> float:
        """Cores the machine's other processes kept busy during the timed window, on average."""
        return self.other_cpu_s / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_minute(self) -> float:
        return self.questions * 60.0 / self.seconds if self.seconds > 0 else 0.0

    @property
    def is_clean(self) -> bool:
        """Every mention got exactly one reply, and none was an apology."""
        return self.answered_once == self.questions and not (self.missing or self.duplicated or self.failed)


@dataclass
class Summary:
    """The medians of each configuration and their ratio, against the target."""

    single_per_minute: float
    double_per_minute: float
    ratio: float
    all_clean: bool

    @property
    def met(self) -> bool:
        return self.all_clean and self.ratio >= TARGET_RATIO


def summarise(rounds: Sequence[Round]) -> Summary:
    """Median questions per minute of the 1-replica and of the 2-replica rounds, and the ratio of those medians.

    >>> busy = Round(3, 2, 60, 40.0, 60, counted=False)  # run again: not in the medians
    >>> summarise([Round(1, 1, 60, 30.0, 60), Round(2, 2, 60, 16.0, 60), busy]).ratio
    1.875
    """
    counted = [r for r in rounds if r.counted]
    single = statistics.median(r.per_minute for r in counted if r.replicas == 1)
    double = statistics.median(r.per_minute for r in counted if r.replicas == 2)
    every_reply_once = all(r.is_clean for r in rounds)  # a lost reply counts even in a round run again
    return Summary(single, double, double / single if single else 0.0, every_reply_once)


# Rendering -------------------------------------------------------------------------------------------------------


def render_section(rounds: Sequence[Round], *, command: str, context: str) -> str:
    """The Markdown section (without markers): the command, the conditions, one row per round, the medians and
    whether the target is met."""
    summary = summarise(rounds)
    lines = [
        "### Replicas: questions per minute (issue 16)",
        "",
        f"Command: `{command}`",
        "",
        context,
        "",
        "| round | replicas | seconds | questions/min | answered once | replies per replica | replica CPU s per "
        "question | PostgreSQL CPU s | this process CPU s | other processes (cores) | load average before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rounds:
        once = f"{r.answered_once}/{r.questions}"
        if not r.is_clean:
            once += f" (**{r.missing} missing, {r.duplicated} twice, {r.failed} apologies**)"
        number = str(r.number) if r.counted else f"~~{r.number}~~ (not counted: machine busy)"
        lines.append(
            f"| {number} | {r.replicas} | {r.seconds:.1f} | {r.per_minute:.0f} | {once} | "
            f"{' + '.join(str(n) for n in r.per_replica)} | {r.replica_cpu_s / max(r.questions, 1):.3f} | "
            f"{r.postgres_cpu_s:.1f} | {r.bench_cpu_s:.1f} | {r.other_cores:.2f} | {r.load_before:.2f} |"
        )
    for replicas in (1, 2):
        per_minute = summary.single_per_minute if replicas == 1 else summary.double_per_minute
        lines.append(f"| **median** | {replicas} | | **{per_minute:.0f}** | | | | | | | |")
    met = "met" if summary.met else "**not met**"
    lines += [
        "",
        "| target | wanted | measured (medians) | met |",
        "|---|---|---|---|",
        f"| two replicas vs one, `QABOT_THREADS=1` each | >= {TARGET_RATIO} x | "
        f"{summary.double_per_minute:.0f} / {summary.single_per_minute:.0f} questions/min = "
        f"**{summary.ratio:.2f} x** | {met} |",
    ]
    if not summary.all_clean:
        lines += ["", "Not every mention got exactly one reply: the run does not count."]
    return "\n".join(lines) + "\n"


def write_section(path: str | Path, section: str) -> None:
    """Put `section` between the replica markers of `path`, keeping everything around them; a file without the
    markers gets them at its end."""
    path = Path(path)
    block = f"{BEGIN}\n{section}{END}"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if BEGIN in old and END in old:
        before, rest = old.split(BEGIN, 1)
        new = before + block + rest.split(END, 1)[1]
    else:
        new = (old.rstrip() + "\n\n" if old.strip() else "") + block + "\n"
    path.write_text(new, encoding="utf-8")


# CPU accounting (/proc) ------------------------------------------------------------------------------------------


def _process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime: fields 14 and 15 of proc(5)


def _machine_busy_s() -> float:
    """CPU seconds every core of the machine spent busy since boot (/proc/stat: all but idle and iowait)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return (user + nice + system + irq + softirq + steal) / _CLOCK_TICKS


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by the replicas, each PostgreSQL backend, this process and the whole machine."""

    replicas: float
    postgres: dict[int, float]
    bench: float
    machine: float


def cpu_snapshot(replica_pids: Sequence[int], postgres_pids: Sequence[int]) -> CpuSnapshot:
    own = os.times()
    return CpuSnapshot(
        replicas=sum(_process_cpu_s(pid) for pid in replica_pids),
        postgres={pid: _process_cpu_s(pid) for pid in postgres_pids},
        bench=own.user + own.system,
        machine=_machine_busy_s(),
    )


def cpu_used(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float, float, float]:
    """(replicas, PostgreSQL backends, this process, everything else) CPU seconds between two snapshots."""
    replicas = after.replicas - before.replicas
    postgres = sum(s - before.postgres.get(pid, 0.0) for pid, s in after.postgres.items())
    bench = after.bench - before.bench
    machine = after.machine - before.machine
    return replicas, postgres, bench, max(0.0, machine - replicas - postgres - bench)


def others_busy_cores(*, sample_s: float = 3.0) -> float:
    """How many cores the rest of the machine keeps busy now (its busy time over `sample_s`, less this process's)."""
    before = cpu_snapshot([], [])
    time.sleep(sample_s)
    return cpu_used(before, cpu_snapshot([], []))[3] / sample_s


def wait_for_quiet(*, below_cores: float, timeout_s: float) -> float:
    """Wait until the other processes on the machine use fewer than `below_cores` cores (or `timeout_s` passed);
    returns the last sample."""
    deadline = time.monotonic() + timeout_s
    busy = others_busy_cores()
    while busy >= below_cores and time.monotonic() < deadline:
        print(f"  other processes use {busy:.2f} cores; waiting for quiet", file=sys.stderr)
        time.sleep(10)
        busy = others_busy_cores()
    return busy


# The library -----------------------------------------------------------------------------------------------------


def _admin_url(url: str) -> tuple[str, str]:
    """(URL of the server's `postgres` database, name of the database of `url`)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(url)
    name = str(parts.get("dbname") or "")
    if not name:
        raise SystemExit(f"--db {url} names no database")
    return make_conninfo(url, dbname="postgres"), name


def ensure_library(url: str, *, squad: Path, articles: int, questions: int, workdir: Path) -> dict:
    """The recipe of the benchmark library in `url` with its questions: built through `PostgresStore.bulk()` when
    the database is missing or empty, reused when its recipe (kept in `workdir`) matches."""
    import psycopg
    from psycopg import sql

    admin, name = _admin_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        if conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone() is None:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
            print(f"created database {name}", file=sys.stderr)
    from bot.store.postgres import PostgresStore

    meta_path = workdir / f"replicas-{name}.json"
    recipe = {"version": RECIPE_VERSION, "articles": articles, "questions": questions, "squad": squad.name}
    store = PostgresStore(url)
    try:
        stored = store.article_count()
        if stored and meta_path.is_file():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("recipe") == recipe and meta.get("articles") == stored:
                return meta
        if stored:
            raise SystemExit(
                f"Database {name} holds {stored} articles but no matching recipe in {meta_path}. "
                f"Pass another --db, or drop it (dropdb -h 127.0.0.1 -U postgres {name}) to rebuild."
            )
        from bot.bench.corpus import build_articles, load_squad_corpus, pick_questions

        print(f"building {articles} articles from {squad} into {name} ...", file=sys.stderr)
        data = load_squad_corpus(squad)
        built = build_articles(data, articles)
        started = time.perf_counter()
        with store.bulk():
            for article, _ in built:
                store.add_article(article)
        seconds = time.perf_counter() - started
        picked = pick_questions(data, built, questions)
        passages = store.conn.execute("select count(*) as n from passages").fetchone()
        meta = {
            "recipe": recipe,
            "articles": store.article_count(),
            "passages": int(passages["n"]) if passages else 0,
            "build_s": round(seconds, 1),
            "questions": [q.question for q in picked],
        }
    finally:
        store.close()
    workdir.mkdir(parents=True, exist_ok=True)
    meta_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    print(f"built in {meta['build_s']} s: {meta['articles']} articles, {meta['passages']} passages", file=sys.stderr)
    return meta


def _empty_slack_tables(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"truncate {', '.join(SLACK_TABLES)}")


def _postgres_backends(url: str) -> list[int]:
    import psycopg

    _, name = _admin_url(url)
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where datname = %s and pid <> pg_backend_pid()", [name]
        ).fetchall()
    return [int(row[0]) for row in rows]


# One round -------------------------------------------------------------------------------------------------------


def _replies(fake: FakeSlackAPI, threads: set[str]) -> list[tuple[float, dict, str]]:
    """(when, body, token) of every chat.postMessage into one of `threads`."""
    return [
        (at, body, token)
        for at, method, body, token in fake.timed_calls()
        if method == "chat.postMessage" and body.get("thread_ts") in threads
    ]


def _wait_answered(fake: FakeSlackAPI, threads: set[str], *, timeout_s: float, procs: Sequence[BotProcess]) -> bool:
    """Until every thread in `threads` got a reply (True) or `timeout_s` passed (False).

    :raises SystemExit: with the end of each replica's log, when one of them exited.
    """
    deadline = time.monotonic() + timeout_s
    while len({body["thread_ts"] for _, body, _ in _replies(fake, threads)}) < len(threads):
        if not all(p.running for p in procs):
            logs = "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in procs)
            raise SystemExit(f"a replica exited during the round:\n{logs}")
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def run_round(
    number: int, replicas: int, *, url: str, questions: Sequence[str], settings: dict[str, str], workdir: Path
) -> Round:
    """Start `replicas` fresh `serve` replicas, warm them up, then time one burst of every question."""
    _empty_slack_tables(url)
    logs = workdir / f"round-{number}"
    shutil.rmtree(logs, ignore_errors=True)  # the replicas' logs of an earlier run with this round number
    tokens = [f"xoxb-replica-{chr(ord('a') + i)}" for i in range(replicas)]
    with FakeSlackAPI() as fake:
        env = bot_env(database=url, slack_api_url=fake.base_url, **settings)
        procs = [
            BotProcess.serve({**env, "SLACK_BOT_TOKEN": token}, cwd=logs, name=f"serve-{token[-1]}") for token in tokens
        ]
        for proc in procs:
            proc.start()
        try:
            for proc in procs:
                proc.wait_healthy(timeout_s=300)
            # warm-up: a few questions each, outside the timed window (first reads, connections, caches)
            warm = [
                mention_event(900_000 + n, text=questions[n % len(questions)])
                for n in range(WARM_UP_PER_REPLICA * replicas)
            ]
            for n, event in enumerate(warm):
                post_event(procs[n % replicas].url, event)
            if not _wait_answered(fake, {e["event"]["ts"] for e in warm}, timeout_s=120, procs=procs):
                raise SystemExit(f"the warm-up questions were not answered within 120 s; see the logs in {logs}")
            events = [mention_event(n + 1, text=question) for n, question in enumerate(questions)]
            threads = {e["event"]["ts"] for e in events}
            before = cpu_snapshot([p.pid for p in procs], _postgres_backends(url))
            load_before = os.getloadavg()[0]
            started = time.monotonic()
            with ThreadPoolExecutor(4) as pool:
                statuses = list(pool.map(lambda n: post_event(procs[n % replicas].url, events[n]), range(len(events))))
            if statuses != [200] * len(events):
                raise SystemExit(f"mentions not acknowledged with 200: {sorted(set(statuses))}")
            # long enough for a lost job's lease (60 s) to run out and another worker to answer it: counted missing
            _wait_answered(fake, threads, timeout_s=120 + 2 * len(events), procs=procs)
            after = cpu_snapshot([p.pid for p in procs], list(before.postgres))
            replies = _replies(fake, threads)
            finished = max((at for at, _, _ in replies), default=time.monotonic())
            time.sleep(1.0)  # a job answered twice would post again within this
            replies = _replies(fake, threads)
            for proc in procs:
                proc.stop(signal.SIGINT)
        finally:
            for proc in procs:
                if proc.running:
                    proc.kill()
    counts = {ts: 0 for ts in threads}
    for _, body, _ in replies:
        counts[body["thread_ts"]] += 1
    failed = sum(1 for _, body, _ in replies if str(body.get("text", "")).startswith(APOLOGY) or _is_busy(body))
    replica_s, postgres_s, bench_s, other_s = cpu_used(before, after)
    return Round(
        number=number,
        replicas=replicas,
        questions=len(events),
        seconds=finished - started,
        answered_once=sum(1 for n in counts.values() if n == 1),
        missing=sum(1 for n in counts.values() if n == 0),
        duplicated=sum(1 for n in counts.values() if n > 1),
        failed=failed,
        per_replica=[sum(1 for _, _, token in replies if token == t) for t in tokens],
        replica_cpu_s=replica_s,
        postgres_cpu_s=postgres_s,
        bench_cpu_s=bench_s,
        other_cpu_s=other_s,
        load_before=load_before,
    )


def _is_busy(body: dict) -> bool:
    from bot.core import messages
    from bot.slack import blocks

    return body.get("text") == blocks.notice(messages.render("slack_busy"))["text"]


# The command line ------------------------------------------------------------------------------------------------


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _context(meta: dict, *, threads: int, questions: int, settings: dict[str, str], started: str) -> str:
    import torch

    watched = ("TOKENIZERS_PARALLELISM", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
    env = ", ".join(f"{name}={os.environ[name]}" for name in watched if name in os.environ) or "none set"
    return (
        f"{started}, {os.cpu_count()} CPU cores ({_cpu_model()}), torch "
        f"{torch.__version__}, Python {platform.python_version()}. Library: {meta['articles']} SQuAD benchmark "
        f"articles ({meta['passages']} passages) in PostgreSQL, built through `PostgresStore.bulk()`. Each round "
        f"starts fresh `qa-bot serve` replicas (`QABOT_THREADS={threads}`, 2 job workers each, one reading at a "
        f"time), warms each up with {WARM_UP_PER_REPLICA} questions, then sends {questions} signed mentions at once, "
        f"round-robin over the replicas, and times from the first mention sent to the last reply recorded by the "
        f"fake Slack Web API (in this process). Settings: "
        f"{', '.join(f'`{k}={v}`' for k, v in settings.items() if k != 'QABOT_THREADS')}; "
        f'thread variables in the environment: {env}. CPU columns are over the timed window; "other processes" '
        "is the machine's busy time less the replicas, their PostgreSQL backends and this process."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default=DEFAULT_DB, help="PostgreSQL URL of the benchmark library (created).")
    parser.add_argument("--squad", type=Path, default=Path(DEFAULT_SQUAD), help="SQuAD v1.1 train file.")
    parser.add_argument("--articles", type=int, default=1000, help="Benchmark articles in the library.")
    parser.add_argument("--questions", type=int, default=60, help="Mentions per round.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds of each configuration, interleaved.")
    parser.add_argument("--threads", type=int, default=1, help="QABOT_THREADS of each replica.")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench-data" / "replicas", help="Recipe and logs.")
    parser.add_argument(
        "--busy-cores",
        type=float,
        default=0.1,
        help="A round during which other processes used this many cores or more is run again (see --retries).",
    )
    parser.add_argument("--retries", type=int, default=3, help="Times a busy round is run again before it counts.")
    parser.add_argument(
        "--quiet-timeout-s", type=float, default=600.0, help="Longest wait for a quiet machine before each round."
    )
    parser.add_argument("--out", type=Path, default=None, help="Write the section into this file (BENCHMARKS.md).")
    args = parser.parse_args(argv)
    args.workdir = args.workdir.resolve()
    meta = ensure_library(
        args.db, squad=args.squad, articles=args.articles, questions=args.questions, workdir=args.workdir
    )
    questions = meta["questions"][: args.questions]
    settings = {
        "QABOT_THREADS": str(args.threads),
        "QABOT_RATE_LIMIT_PER_MINUTE": "100000",
        "QABOT_MAX_PENDING": str(2 * len(questions) + 10),
        "QABOT_FEED_INTERVAL_MINUTES": "100000",
    }
    started = time.strftime("%Y-%m-%d %H:%M")
    rounds: list[Round] = []
    for _ in range(args.rounds):
        for replicas in (1, 2):
            for attempt in range(args.retries + 1):
                quiet = wait_for_quiet(below_cores=args.busy_cores, timeout_s=args.quiet_timeout_s)
                result = run_round(
                    len(rounds) + 1,
                    replicas,
                    url=args.db,
                    questions=questions,
                    settings=settings,
                    workdir=args.workdir,
                )
                result.counted = result.other_cores < args.busy_cores or attempt == args.retries
                rounds.append(result)
                print(
                    f"round {result.number}: {replicas} replica(s) {result.seconds:.1f} s "
                    f"{result.per_minute:.0f}/min answered once {result.answered_once}/{result.questions}; other "
                    f"processes {quiet:.2f} cores before, {result.other_cores:.2f} during"
                    f"{'' if result.counted else ' (busy: run again)'}",
                    file=sys.stderr,
                )
                if result.counted:
                    break
    (args.workdir / "last-run.json").write_text(json.dumps([asdict(r) for r in rounds], indent=2), encoding="utf-8")
    command = "python scripts/replica_throughput.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    section = render_section(
        rounds,
        command=command.strip(),
        context=_context(meta, threads=args.threads, questions=len(questions), settings=settings, started=started),
    )
    print(section)
    if args.out:
        write_section(args.out, section)
    return 0 if summarise(rounds).met else 1


if __name__ == "__main__":
    sys.exit(main())
