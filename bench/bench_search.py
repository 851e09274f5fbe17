"""Search (issue 14) over a million stored messages, on SQLite and PostgreSQL, beside a ``LIKE '%word%'`` scan.

The data: ``BENCH_SEARCH_MESSAGES`` messages (default 1,000,000; BENCH_QUICK=1: 20,000) in conversations of about
100 messages each (10,000), owned 100 to a user (100 users), interleaved in time as concurrent chats are, plus one
light user whose single conversation holds 0.01 % of the messages. Text is 60 % English, 40 % Russian by
conversation: function words, real inflected content words ("погода", "погоды", "running" …) and made-up words,
drawn by a Zipf law (so word frequencies look like chat text: a few words in most messages, most words rare);
user turns ~12 words, assistant turns ~45. Rows go in with executemany / COPY at migration 0006, then migrations
0007-0008 build the search index over them, timed, as on a server upgraded with its history in place.

Measured, per database, through ``core.history.search.search_messages`` on the store's engine:
1. search p50 and p99 over queries a user would type: a word or two from one of their own messages (so it
   matches), a typed prefix, a frequent word, a word others used; each query by a random user, in their own
   conversations; beside the same queries as ``content LIKE '%word%'`` (every word, same owner join, newest first,
   LIMIT 20), measured in the same run on a sample of them;
2. the same in mode ``none`` (every conversation);
3. the light user searching frequent words: every match of the word is someone else's (the index's walk is long);
4. "the latest 50 messages of a conversation" through ``SQLHistoryStore.recent``, p50.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import numpy as np
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from bench.common import QUICK_MARK, line, percentile, sized
from core.errors import HistoryError
from core.history import SQLHistoryStore
from core.history.migrate import alembic_config
from core.history.search import WORD, search_messages

MESSAGES = int(os.environ.get("BENCH_SEARCH_MESSAGES", sized(1_000_000, 20_000)))
PER_CONVERSATION = 100
PER_USER = sized(100, 20)
QUERIES = sized(400, 60)
LIKE_QUERIES = sized(20, 6)  # a LIKE scan reads every row: a sample of the same queries
RECENT_READS = sized(2000, 200)
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
SEED = 14


def words(text: str) -> list[str]:
    return text.split()



EN_FUNCTION = words("""the to and a of i you it is in that for this on with be are can your have what my me not do
    but if so was we at as or just like about how all an from will there would they get one by some know more
    when out up then he she no yes which our""")
RU_FUNCTION = words("""и в не на я что с он а как это по но к у из за ты мы вы так же от бы для о мне все его ли
    она они уже или если да нет то только когда еще есть был тебе меня там ну вот может""")
EN_CONTENT = words("""weather run runs running ran runner happy happiness happily rain rains raining rained city cities
    book books booked booking travel travels travelling travelled train trains training trained music song songs
    play plays playing played work works working worked cook cooks cooking cooked recipe recipes soup kitchen
    garden gardens gardening flower flowers walk walks walking walked dog dogs cat cats computer computers program
    programs programming programmer python code coding error errors meeting meetings schedule scheduled tomorrow
    today yesterday morning evening night weekend holiday holidays family friend friends school teacher learn
    learning learned language languages translate translation question questions answer answers help helps
    helping helped write writes writing wrote letter letters email message messages movie movies film watch
    watching watched sport football tennis swim swimming doctor health medicine sleep sleeping dream dreams""")
RU_CONTENT = words("""погода погоды погоду погоде погодой дождь дождя дожди дождём город города городе городу книга
    книги книгу книге книгой путешествие путешествия поездка поездки поезд поезда музыка музыки музыку песня
    песни работа работы работу работе работать работаю работает готовить готовлю рецепт рецепты рецепта суп супа
    кухня кухне сад саду цветы цветов гулять гуляю прогулка собака собаки кошка кошки компьютер компьютера
    программа программы программу программист код кода ошибка ошибки ошибку встреча встречи встречу расписание
    завтра сегодня вчера утро утром вечер вечером ночь выходные праздник семья семьи друг друга друзья друзей
    школа школе учитель учить учу язык языка языки перевод перевести вопрос вопросы вопроса ответ ответы ответа
    помощь помочь помоги написать напиши письмо письма сообщение сообщения фильм фильмы смотреть смотрю спорт
    футбол плавать врач здоровье лекарство спать сон сны москва москве москву""")
EN_SYLLABLES = [c + v for c in "bcdfghklmnprstvwz" for v in ("a", "e", "i", "o", "u", "ai", "ou", "er", "an")]
RU_SYLLABLES = [c + v for c in "бвгдзклмнпрстфхчш" for v in ("а", "о", "е", "и", "у", "ы", "я", "ер", "ан")]
RU_ENDINGS = ["", "а", "ы", "у", "е", "ой", "ов", "ам", "ами", "ах", "ом"]


@dataclass
class Corpus:
    """The generated history: one row per message, and who owns each conversation."""

    client_ids: list[str]  # per message
    roles: list[str]
    contents: list[str]
    created: list[datetime]
    owners: list[int]  # per conversation: user id
    light_user: int
    frequent: list[str]  # the most frequent words after the function words, in each language


def vocabulary(rng: np.random.Generator, function: list[str], content: list[str], made: list[str]) -> list[str]:
    """Function words first, then real and made-up content words shuffled: the ranks of a Zipf law."""
    rest = list(dict.fromkeys(content + made))
    order = rng.permutation(len(rest))
    return list(function) + [rest[i] for i in order]


def made_up(rng: np.random.Generator, syllables: list[str], count: int, endings: list[str] | None) -> list[str]:
    words: set[str] = set()
    while len(words) < count:
        stem = "".join(syllables[i] for i in rng.integers(0, len(syllables), int(rng.integers(2, 5))))
        words.add(stem + (endings[int(rng.integers(0, len(endings)))] if endings else ""))
    return sorted(words)


def zipf_probabilities(size: int) -> np.ndarray:
    weights = 1.0 / (np.arange(size) + 2.7)
    result: np.ndarray = weights / weights.sum()
    return result


def generate(messages: int) -> Corpus:
    rng = np.random.default_rng(SEED)
    conversations = max(2, messages // PER_CONVERSATION)
    users = max(1, conversations // PER_USER)
    made = max(1000, messages // 40)
    vocab = {
        "en": vocabulary(rng, EN_FUNCTION, EN_CONTENT, made_up(rng, EN_SYLLABLES, made, None)),
        "ru": vocabulary(rng, RU_FUNCTION, RU_CONTENT, made_up(rng, RU_SYLLABLES, made, RU_ENDINGS)),
    }
    languages = np.where(rng.random(conversations) < 0.6, 0, 1)
    # The last conversation is the light user's: about 0.01 % of the messages.
    weights = np.ones(conversations)
    weights[-1] = max(0.05, conversations / 10_000)
    conversation_of = rng.choice(conversations, size=messages, p=weights / weights.sum())
    turn = np.zeros(conversations, dtype=np.int64)
    roles: list[str] = []
    lengths = np.empty(messages, dtype=np.int64)
    short = rng.geometric(1 / 10, messages) + 1
    long = np.minimum(rng.geometric(1 / 40, messages) + 5, 400)
    for i, conv in enumerate(conversation_of.tolist()):
        user_turn = turn[conv] % 2 == 0
        turn[conv] += 1
        roles.append("user" if user_turn else "assistant")
        lengths[i] = short[i] if user_turn else long[i]
    contents: list[str] = [""] * messages
    for code, name in enumerate(("en", "ru")):
        words = vocab[name]
        rows = np.flatnonzero(languages[conversation_of] == code)
        draws = rng.choice(len(words), size=int(lengths[rows].sum()), p=zipf_probabilities(len(words))).tolist()
        at = 0
        for row, length in zip(rows.tolist(), lengths[rows].tolist(), strict=True):
            sentence = " ".join([words[w] for w in draws[at : at + length]])
            at += length
            contents[row] = sentence[:1].upper() + sentence[1:] + ("?" if row % 3 == 0 else ".")
    start = datetime(2025, 1, 1, tzinfo=UTC)
    step = timedelta(days=365) / messages
    owners = [conv % users + 1 for conv in range(conversations - 1)] + [users + 1]
    return Corpus(
        client_ids=[f"conv-{conv:05d}" for conv in conversation_of.tolist()],
        roles=roles,
        contents=contents,
        created=[start + step * i for i in range(messages)],
        owners=owners,
        light_user=users + 1,
        frequent=vocab["en"][len(EN_FUNCTION) : len(EN_FUNCTION) + 20]
        + vocab["ru"][len(RU_FUNCTION) : len(RU_FUNCTION) + 20],
    )


def upgrade_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    return run


async def migrate(url: str, revision: str) -> float:
    engine = create_async_engine(url)
    try:
        start = time.perf_counter()
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to(revision))
        return time.perf_counter() - start
    finally:
        await engine.dispose()


async def load_sqlite(path: Path, corpus: Corpus) -> float:
    """Rows in at 0006 with executemany, then 0007-0008 (the index built over them); returns their seconds."""
    import sqlite3

    url = f"sqlite+aiosqlite:///{path}"
    await migrate(url, "0006")
    db = sqlite3.connect(path)
    stamp = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy's DateTime stores a timestamp in SQLite
    with db:
        db.executemany(
            "INSERT INTO users (id, username, role, disabled, created_at) VALUES (?, ?, 'user', 0, ?)",
            [(u, f"user{u}", corpus.created[0].strftime(stamp)) for u in sorted(set(corpus.owners))],
        )
        db.executemany(
            "INSERT INTO conversations (client_id, user_id, created_at, title) VALUES (?, ?, ?, ?)",
            [(f"conv-{c:05d}", owner, corpus.created[0].strftime(stamp), f"Chat {c}")
             for c, owner in enumerate(corpus.owners)],
        )
        db.executemany(
            "INSERT INTO messages (client_id, role, content, source, status, created_at) "
            "VALUES (?, ?, ?, 'text', 'ok', ?)",
            zip(corpus.client_ids, corpus.roles, corpus.contents, (c.strftime(stamp) for c in corpus.created),
                strict=True),
        )
    db.close()
    return await migrate(url, "head")


async def load_postgresql(url: str, corpus: Corpus) -> float:
    """Rows in at 0006 with COPY, then 0007-0008 and ANALYZE; returns their seconds."""
    await migrate(url, "0006")
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        first = corpus.created[0]
        await conn.copy_records_to_table(
            "users", records=[(u, f"user{u}", "user", False, first) for u in sorted(set(corpus.owners))],
            columns=["id", "username", "role", "disabled", "created_at"],
        )
        await conn.copy_records_to_table(
            "conversations", records=[(f"conv-{c:05d}", owner, first, f"Chat {c}")
                                      for c, owner in enumerate(corpus.owners)],
            columns=["client_id", "user_id", "created_at", "title"],
        )
        await conn.copy_records_to_table(
            "messages",
            records=zip(corpus.client_ids, corpus.roles, corpus.contents, ["text"] * len(corpus.roles),
                        ["ok"] * len(corpus.roles), corpus.created, strict=True),
            columns=["client_id", "role", "content", "source", "status", "created_at"],
        )
        await conn.execute("SELECT setval('messages_id_seq', (SELECT max(id) FROM messages))")
        seconds = await migrate(url, "head")
        await conn.execute("VACUUM ANALYZE")
        return seconds
    finally:
        await conn.close()


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    user_id: int


def make_queries(corpus: Corpus, count: int) -> list[Query]:
    """What users search: mostly words of their own messages, some typed prefixes, frequent and others' words."""
    rnd = random.Random(SEED)
    owner = {f"conv-{c:05d}": o for c, o in enumerate(corpus.owners)}
    heavy = sorted(set(corpus.owners) - {corpus.light_user})
    queries: list[Query] = []
    while len(queries) < count:
        row = rnd.randrange(len(corpus.contents))
        words = [w.lower() for w in WORD.findall(corpus.contents[row]) if len(w) >= 4]
        user = owner[corpus.client_ids[row]]
        if not words or user == corpus.light_user:
            continue
        roll = rnd.random()
        if roll < 0.4:
            queries.append(Query("own word", rnd.choice(words), user))
        elif roll < 0.6:
            queries.append(Query("two own words", " ".join(rnd.sample(words, min(2, len(words)))), user))
        elif roll < 0.7:
            word = rnd.choice(words)
            queries.append(Query("own prefix", word[: max(3, len(word) - 2)], user))
        elif roll < 0.85:
            queries.append(Query("frequent word", rnd.choice(corpus.frequent), rnd.choice(heavy)))
        else:
            queries.append(Query("someone's word", rnd.choice(words), rnd.choice(heavy)))
    return queries


async def seconds_each(calls: Sequence[Callable[[], Awaitable[object]]]) -> list[float]:
    """How long each call took, one after another."""
    spent = []
    for call in calls:
        start = time.perf_counter()
        await call()
        spent.append(time.perf_counter() - start)
    return spent


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds * 1000:.0f} ms"


async def like_scan(store: SQLHistoryStore, query: Query) -> None:
    """The baseline: every word as ``LIKE '%word%'`` (ILIKE on PostgreSQL), the same join, newest first."""
    words = [w for w in WORD.findall(query.text.lower())]
    op = "ILIKE" if store.dialect == "postgresql" else "LIKE"
    where = " AND ".join(f"m.content {op} :w{i}" for i in range(len(words)))
    sql = text(
        "SELECT m.id, m.client_id, m.role, m.created_at, m.content, c.title FROM messages m "
        f"JOIN conversations c ON c.client_id = m.client_id WHERE c.user_id = :user AND {where} "
        "ORDER BY m.id DESC LIMIT 20"
    )
    params: dict[str, object] = {f"w{i}": f"%{w}%" for i, w in enumerate(words)}
    params["user"] = query.user_id
    async with store.engine.connect() as conn:
        (await conn.execute(sql, params)).all()


async def measure(name: str, url: str, corpus: Corpus, queries: list[Query], index_s: float) -> None:
    store = SQLHistoryStore(url)
    await store.start()
    hits: list[int] = []
    try:
        engine = store.engine

        def search(text: str, user_id: int | None) -> Callable[[], Awaitable[None]]:
            async def call() -> None:
                hits.append(len(await search_messages(engine, query=text, user_id=user_id, limit=20)))

            return call

        def like(query: Query) -> Callable[[], Awaitable[None]]:
            return lambda: like_scan(store, query)

        await seconds_each([search(q.text, q.user_id) for q in queries[:20]])  # warm the caches and the pool
        hits.clear()
        own = await seconds_each([search(q.text, q.user_id) for q in queries])
        found = statistics.mean(hits)
        every = await seconds_each([search(q.text, None) for q in queries])
        frequent = [q.text for q in queries if q.kind == "frequent word"][: sized(40, 10)]
        lonely = await seconds_each([search(text, corpus.light_user) for text in frequent])
        baseline = await seconds_each([like(q) for q in queries[:LIKE_QUERIES]])
        clients = list(dict.fromkeys(corpus.client_ids))
        rnd = random.Random(SEED)
        await store.recent(clients[0], 50)
        recent = await seconds_each([functools.partial(store.recent, rnd.choice(clients), 50)
                                     for _ in range(RECENT_READS)])
    finally:
        await store.aclose()
    size = f"{len(corpus.contents):,} messages"
    print(f"{name}: search index built by migrations 0007-0008 over {size} in {index_s:.1f} s", flush=True)
    like_p50, like_p99 = statistics.median(baseline), percentile(baseline, 99)
    line(f"{name}: search p50 ({size}, the user's own conversations)", ms(statistics.median(own)),
         f"LIKE '%word%' p50 {ms(like_p50)}", statistics.median(own) / like_p50, "≤ 20 ms")
    line(f"{name}: search p99 ({size}, the user's own conversations)", ms(percentile(own, 99)),
         f"LIKE '%word%' p99 {ms(like_p99)}", percentile(own, 99) / like_p99, "≤ 100 ms")
    sample = own[:LIKE_QUERIES]
    line(f"{name}: search p50 over the {LIKE_QUERIES} queries LIKE ran", ms(statistics.median(sample)),
         f"LIKE '%word%' {ms(like_p50)}", statistics.median(sample) / like_p50)
    line(f"{name}: search p50 / p99 in mode none (every conversation)",
         f"{ms(statistics.median(every))} / {ms(percentile(every, 99))}", target="≤ 20 ms / ≤ 100 ms")
    line(f"{name}: search p50 / p99, a user with 0.01 % of the messages searching frequent words",
         f"{ms(statistics.median(lonely))} / {ms(percentile(lonely, 99))}", target="≤ 20 ms / ≤ 100 ms")
    print(f"{name}: {found:.1f} hits per query (limit 20)", flush=True)
    line(f"{name}: latest 50 messages of a conversation p50 (SQLHistoryStore.recent)",
         ms(statistics.median(recent)), target="≤ 2 ms")


async def postgresql_database() -> tuple[str, Callable[[], Awaitable[None]]] | None:
    name = f"web_bot_bench_search_{os.getpid()}"
    try:
        admin = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as err:
        print(f"postgresql: not measured, {PG_ADMIN_URL} is not reachable ({err})", flush=True)
        return None
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}", drop


async def main() -> None:
    start = time.perf_counter()
    corpus = generate(MESSAGES)
    queries = make_queries(corpus, QUERIES)
    conversations = len(corpus.owners)
    print(
        f"# search benchmark{QUICK_MARK} ({len(corpus.contents):,} messages, {conversations:,} conversations, "
        f"{len(set(corpus.owners)) - 1} users x ~{PER_USER} conversations + 1 light user; {len(queries)} queries; "
        f"generated in {time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="bench-search-") as workdir:
        path = Path(workdir) / "search.db"
        start = time.perf_counter()
        index_s = await load_sqlite(path, corpus)
        print(f"sqlite: loaded in {time.perf_counter() - start:.0f} s, file {path.stat().st_size / 2**20:.0f} MB",
              flush=True)
        try:
            await measure("sqlite", f"sqlite+aiosqlite:///{path}", corpus, queries, index_s)
        except HistoryError as err:
            raise SystemExit(f"sqlite: {err}") from err
    database = await postgresql_database()
    if database is None:
        return
    url, drop = database
    try:
        start = time.perf_counter()
        index_s = await load_postgresql(url, corpus)
        print(f"postgresql: loaded in {time.perf_counter() - start:.0f} s", flush=True)
        await measure("postgresql", url, corpus, queries, index_s)
    finally:
        await drop()


if __name__ == "__main__":
    asyncio.run(main())
