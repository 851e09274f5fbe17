"""Search over stored messages (issue 14) on a real SQLite file and a real PostgreSQL database, through the real
migrations and the store's own writes: stems and prefixes in English and Russian, owners, snippets, hostile
queries, deletes, updates and paging."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from core.auth.accounts import AccountStore
from core.errors import HistoryError
from core.history import SQLHistoryStore
from core.history import search as search_module
from core.history.__main__ import main as migrate_cli
from core.history.migrate import alembic_config
from core.history.search import SearchHit, parse_query, search_messages
from core.models import NewMessage
from tests.test_history import history_url  # noqa: F401  (the same two databases)


def upgrade_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    return run


def downgrade_to(revision: str) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        command.downgrade(alembic_config(connection), revision)

    return run


class Chats:
    """A store with two users (ann, bob) and an ownerless conversation (mode none), and helpers to fill it."""

    def __init__(self, store: SQLHistoryStore) -> None:
        self.store = store
        self.accounts = AccountStore(store.engine)
        self.ann = 0
        self.bob = 0

    async def start(self) -> Chats:
        self.ann = (await self.accounts.create_user("ann", None, "user")).id
        self.bob = (await self.accounts.create_user("bob", None, "user")).id
        assert await self.accounts.claim("ann-chat", self.ann) == self.ann
        assert await self.accounts.claim("bob-chat", self.bob) == self.bob
        await self.accounts.register("open-chat")
        return self

    async def say(self, client_id: str, *texts: str) -> list[int]:
        return [(await self.store.append(NewMessage(client_id, "user", t))).id for t in texts]

    async def find(self, query: str, user_id: int | None = -1, **kwargs: int) -> list[SearchHit]:
        owner = self.ann if user_id == -1 else user_id
        return await search_messages(self.store.engine, query=query, user_id=owner, **kwargs)

    async def texts(self, query: str, user_id: int | None = -1) -> set[str]:
        hits = await self.find(query, user_id)
        return {"".join(part for part, _ in hit.snippet) for hit in hits}


@pytest.fixture
async def chats(history_url: str) -> AsyncIterator[Chats]:  # noqa: F811
    store = SQLHistoryStore(history_url)
    await store.start()
    try:
        yield await Chats(store).start()
    finally:
        await store.aclose()


async def test_english_words_find_their_other_forms_and_typed_prefixes(chats: Chats) -> None:
    await chats.say(
        "ann-chat", "I run every morning", "She runs fast", "Running shoes on sale", "Brunch at noon",
        "A happy dog", "Happiness is a warm cup", "Unrelated words only",
    )
    running = {"I run every morning", "She runs fast", "Running shoes on sale"}
    assert await chats.texts("running") == running
    assert await chats.texts("RUNS") == running
    assert await chats.texts("runn") == {"Running shoes on sale"}  # a typed prefix
    assert await chats.texts("happy") == {"A happy dog", "Happiness is a warm cup"}  # happy → happi*, and happy*
    assert await chats.texts("happiness") == {"A happy dog", "Happiness is a warm cup"}
    assert await chats.texts("running dog") == set()  # every word must match
    assert await chats.texts("the happy dog") == {"A happy dog"}  # "the" is dropped, not required


async def test_russian_words_find_their_other_forms_and_typed_prefixes(chats: Chats) -> None:
    await chats.say(
        "ann-chat", "Какая сегодня погода?", "Обещали хорошую погоду", "Нет хорошей погоды", "Зелёная ёлка",
        "Он работает онлайн", "Дождь в Москве",
    )
    weather = {"Какая сегодня погода?", "Обещали хорошую погоду", "Нет хорошей погоды"}
    assert await chats.texts("погода") == weather
    assert await chats.texts("Погоды") == weather
    assert await chats.texts("погод") == weather  # a typed prefix
    assert await chats.texts("хорошая погода") == {"Обещали хорошую погоду", "Нет хорошей погоды"}
    assert await chats.texts("ёлки") == {"Зелёная ёлка"}  # Snowball writes ё as е; the stored word keeps ё
    assert await chats.texts("москва") == {"Дождь в Москве"}
    assert await chats.texts("он") == {"Он работает онлайн"}  # a short word matches whole words only
    assert await chats.texts("онлайн") == {"Он работает онлайн"}


async def test_yo_and_ye_find_each_other_both_ways(chats: Chats) -> None:
    """Russian writers type е for ё: either spelling, in the query or the message, anywhere in it, finds the other."""
    lead = "Сначала было очень много других слов про совсем иные вещи, " * 2  # past the snippet's lead
    yellow = await chats.say("ann-chat", "Жёлтый дом", "Купили желтый зонт", lead + "а в конце жёлтый")
    fir = {"ЁЛКИ-ПАЛКИ, четвёртый раз!", "Елки зеленые, четвертый"}  # capital Ё; е and ё in one word
    await chats.say("ann-chat", *sorted(fir), "Серый дом")
    for query in ("желтый", "жёлтый", "ЖЁЛТЫЙ", "Желтый", "жёлт", "желтого"):
        assert sorted(hit.message_id for hit in await chats.find(query)) == yellow, query
    for query in ("елки", "ёлки", "Ёлка", "ЁЛКАМИ", "четвертый", "четвёртый", "чЕтвЁртый", "ёлки четвертый"):
        assert await chats.texts(query) == fir, query
    assert await chats.texts("жёлтый дом") == {"Жёлтый дом"}
    assert len(await chats.find("желтый", None)) == 3  # every conversation (PostgreSQL: the windowed path)


async def test_a_snippet_marks_the_words_as_written(chats: Chats) -> None:
    long = "Сначала было очень много других слов про совсем иные вещи, " * 3 + "а потом Жёлтый дом и ЁЛКА."
    [ident] = await chats.say("ann-chat", long)
    for query in ("желтый елка", "жёлтый ёлка", "ЖЕЛТЫЙ ЕЛКА"):
        [hit] = await chats.find(query)
        assert hit.message_id == ident
        assert [part for part, matched in hit.snippet if matched] == ["Жёлтый", "ЁЛКА"], query
        whole = "".join(part for part, _ in hit.snippet)
        assert whole.startswith("…") and whole.endswith("а потом Жёлтый дом и ЁЛКА.")
    [stored] = await chats.store.recent("ann-chat", 1)
    assert stored.content == long  # only the index is folded


async def test_a_changed_yo_message_leaves_no_stale_words(chats: Chats) -> None:
    """The triggers unindex what they indexed (the folded text): an edit or a clear leaves nothing behind."""
    [ident] = await chats.say("ann-chat", "Зелёная ёлка")
    assert await chats.store.update(ident, "Синяя ель", "ok") == 1
    assert await chats.texts("елка") == set() and await chats.texts("ёлка") == set()
    assert await chats.texts("зеленая") == set()
    assert await chats.texts("синяя") == {"Синяя ель"}
    assert await chats.store.update(ident, "Серый ёж", "ok") == 1
    assert await chats.texts("еж") == {"Серый ёж"}
    await chats.store.clear("ann-chat")
    assert await chats.texts("ёж") == set() and await chats.texts("еж") == set()


async def test_no_word_overmatches(chats: Chats) -> None:
    await chats.say("ann-chat", "a cat on the mat", "category theory", "concatenate strings", "on online")
    assert await chats.texts("on") == {"a cat on the mat", "on online"}  # whole word: not "online"
    assert await chats.texts("mat") == {"a cat on the mat"}  # words start matches: not "format", "automat"
    assert "concatenate strings" not in await chats.texts("cat")
    assert await chats.texts("zzz") == set()


async def test_a_user_finds_only_their_own_conversations_and_mode_none_finds_all(chats: Chats) -> None:
    await chats.say("ann-chat", "ann plans a trip to Paris")
    await chats.say("bob-chat", "bob plans a trip to Paris")
    await chats.say("open-chat", "someone plans a trip to Paris")
    await chats.say("no-row-chat", "an old conversation about a trip to Paris")  # made before conversations rows
    assert await chats.texts("paris") == {"ann plans a trip to Paris"}
    assert await chats.texts("paris", chats.bob) == {"bob plans a trip to Paris"}
    everyone = await chats.find("paris", None)
    assert {hit.client_id for hit in everyone} == {"ann-chat", "bob-chat", "open-chat", "no-row-chat"}
    assert await chats.texts("paris", 999_999) == set()  # a user with no conversations
    assert await chats.texts("ann", chats.bob) == set()


async def test_a_hit_carries_its_conversation_and_a_snippet_without_markup(chats: Chats) -> None:
    async with chats.store.engine.begin() as conn:
        await conn.execute(text("UPDATE conversations SET title = 'Trips' WHERE client_id = 'ann-chat'"))
    long = (
        "Lorem ipsum dolor sit amet, " * 8 + "the <b>weather</b> in Lisbon & the Weather in Porto were fine; "
        + "consectetur adipiscing elit. " * 8
    )
    [ident] = await chats.say("ann-chat", long)
    [hit] = await chats.find("weather lisbon")
    assert (hit.message_id, hit.client_id, hit.role, hit.title) == (ident, "ann-chat", "user", "Trips")
    assert hit.created_at.tzinfo is not None
    marked = [part for part, matched in hit.snippet if matched]
    assert marked == ["weather", "Lisbon", "Weather"]
    whole = "".join(part for part, _ in hit.snippet)
    assert whole.startswith("…") and whole.endswith("…") and len(whole) < len(long)
    assert "<b>" in whole  # text, never markup: the page inserts it as text
    assert whole.index("weather") < 80  # the snippet starts just before the first match
    as_dict = hit.to_dict()
    json.dumps(as_dict)
    assert as_dict["message_id"] == ident and as_dict["title"] == "Trips"
    assert {"text": "Lisbon", "matched": True} in as_dict["snippet"]  # type: ignore[operator]


@pytest.mark.parametrize(
    "query",
    [
        '"', "AND (", "*", "NEAR(a b)", "'", "\\", "a:*", "foo OR", "-", "^", "content:abc", "'); DROP TABLE x; --",
        "x" * 10_000, "\x00", "🙂", "погода*", '"погода" AND', "run & !weather | (", "word\u0301", "",
        " ".join(f"w{i}" for i in range(100)), "a b c d e f g h i j k l m n o p",
    ],
)
async def test_hostile_queries_never_fail(chats: Chats, query: str) -> None:
    await chats.say("ann-chat", "the weather is fine", "погода хорошая", "abc content")
    hits = await chats.find(query)
    assert isinstance(hits, list)
    assert isinstance(await chats.find(query, None), list)


async def test_a_cleared_conversation_is_no_longer_found(chats: Chats) -> None:
    await chats.say("ann-chat", "remember the lighthouse")
    await chats.say("open-chat", "the lighthouse keeper")
    assert len(await chats.find("lighthouse", None)) == 2
    await chats.store.clear("ann-chat")  # DELETE FROM messages
    assert await chats.texts("lighthouse") == set()
    assert {hit.client_id for hit in await chats.find("lighthouse", None)} == {"open-chat"}


async def test_an_updated_message_is_found_by_its_new_words_only(chats: Chats) -> None:
    [ident] = await chats.say("ann-chat", "the quick brown fox jumps")
    assert await chats.store.update(ident, "the quick brown", "interrupted") == 1  # a reply cut short
    assert await chats.texts("fox") == set()
    assert await chats.texts("brown") == {"the quick brown"}
    assert await chats.store.update(ident, "совсем другой текст", "ok") == 1
    assert await chats.texts("quick") == set()
    assert [hit.message_id for hit in await chats.find("текст")] == [ident]


@pytest.mark.parametrize("window", [20_000, 3])  # PostgreSQL in mode none searches the newest ids first
async def test_paging_newest_first(chats: Chats, window: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search_module, "WINDOW", window)
    ids: list[int] = []
    for i in range(25):
        ids += await chats.say("ann-chat", f"note {i} about gardening")
        await chats.say("ann-chat", f"filler {i}")
    ids += await chats.say("open-chat", "gardening elsewhere")
    for user_id, expected in ((chats.ann, ids[:25]), (None, ids)):
        pages: list[list[int]] = []
        before: int | None = None
        while True:
            extra = {"before_id": before} if before is not None else {}
            page = [hit.message_id for hit in await chats.find("garden", user_id, limit=10, **extra)]
            if not page:
                break
            pages.append(page)
            before = page[-1]
        assert [len(page) for page in pages] == ([10, 10, 5] if user_id else [10, 10, 6])
        assert [ident for page in pages for ident in page] == sorted(expected, reverse=True)
    assert await chats.find("garden", limit=0) == []
    assert len(await chats.find("garden", None, limit=1000)) == 26  # capped at 100, and there are 26


def test_queries_become_quoted_terms() -> None:
    assert [t.prefixes for t in parse_query("Running ПОГОДА")] == [("run",), ("погод",)]
    assert parse_query("the") == parse_query("THE")  # only stopwords: matched whole
    assert [t.words for t in parse_query("the")] == [("the",)]
    assert parse_query('" * ( ) : ^') == ()
    assert len(parse_query(" ".join(f"word{i}" for i in range(50)))) == search_module.MAX_TERMS
    assert search_module.fts5_query(parse_query('a"b')) == '("a") AND ("b")'


async def test_rows_stored_before_the_migration_are_indexed(history_url: str) -> None:  # noqa: F811
    engine = create_async_engine(history_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("0006"))
            await conn.execute(text(
                "INSERT INTO messages (client_id, role, content, source, status, created_at) "
                "VALUES ('old', 'user', 'stored before search existed', 'text', 'ok', CURRENT_TIMESTAMP)"
            ))
    finally:
        await engine.dispose()
    store = SQLHistoryStore(history_url)
    await store.start()  # migrates to 0007, which indexes the rows already there
    try:
        [hit] = await search_messages(store.engine, query="existed", user_id=None)
        assert hit.client_id == "old"
        async with store.engine.begin() as conn:  # and back down, and up again
            await conn.run_sync(downgrade_to("0006"))
            await conn.run_sync(upgrade_to("head"))
        assert len(await search_messages(store.engine, query="stored", user_id=None)) == 1
    finally:
        await store.aclose()


async def test_rows_stored_before_yo_folding_are_found_by_either_spelling(history_url: str) -> None:  # noqa: F811
    engine = create_async_engine(history_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(upgrade_to("0007"))  # indexed as written, ё and all
            for content in ("Жёлтый дом", "желтый зонт", "ЁЛКА"):
                await conn.execute(
                    text(
                        "INSERT INTO messages (client_id, role, content, source, status, created_at) "
                        "VALUES ('old', 'user', :content, 'text', 'ok', CURRENT_TIMESTAMP)"
                    ),
                    {"content": content},
                )
    finally:
        await engine.dispose()
    store = SQLHistoryStore(history_url)
    await store.start()  # migrates to 0008, which indexes them again, folded

    async def found(query: str) -> set[str]:
        hits = await search_messages(store.engine, query=query, user_id=None)
        return {"".join(part for part, _ in hit.snippet) for hit in hits}

    try:
        for query in ("желтый", "жёлтый"):
            assert await found(query) == {"Жёлтый дом", "желтый зонт"}
        assert await found("елка") == {"ЁЛКА"}
        async with store.engine.begin() as conn:  # and back down: the index as 0007 made it
            await conn.run_sync(downgrade_to("0007"))
            if conn.dialect.name == "sqlite":
                fts = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH :match"
                assert len((await conn.execute(text(fts), {"match": '"жёлтый"'})).all()) == 1
                assert len((await conn.execute(text(fts), {"match": '"желтый"'})).all()) == 1
                views = "SELECT name FROM sqlite_master WHERE type = 'view'"
                assert (await conn.execute(text(views))).all() == []
            else:
                index = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_content_search'"
                assert "translate" not in (await conn.scalar(text(index)) or "translate")
            await conn.run_sync(upgrade_to("head"))
        assert await found("ёлки") == {"ЁЛКА"}
        assert await found("жёлтый дом") == {"Жёлтый дом"}
    finally:
        await store.aclose()


async def test_postgresql_search_uses_the_folded_index(postgres_url: str) -> None:
    """The query's expression is the index's, word for word: the planner uses the index, not a scan."""
    store = SQLHistoryStore(postgres_url)
    await store.start()
    try:
        sql = f"SELECT m.id FROM messages AS m WHERE {search_module._TSVECTOR} @@ to_tsquery('simple', 'желт:*')"
        async with store.engine.begin() as conn:
            await conn.execute(text("SET LOCAL enable_seqscan = off"))  # a scan despite this: the index is unusable
            plan = "\n".join(row[0] for row in (await conn.execute(text(f"EXPLAIN {sql}"))).all())
        assert "ix_messages_content_search" in plan, plan
    finally:
        await store.aclose()


async def test_a_broken_index_is_a_history_error(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = SQLHistoryStore(f"sqlite+aiosqlite:///{path}")
    await store.start()
    try:
        with sqlite3.connect(path) as db:
            db.execute("DROP TABLE messages_fts")
        with pytest.raises(HistoryError) as err:
            await search_messages(store.engine, query="anything", user_id=None)
        assert err.value.code == "history-unavailable"
    finally:
        await store.aclose()


def test_the_offline_migration_script_builds_the_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"database": {"db_path": str(tmp_path / "cli.db")}}))
    assert migrate_cli(["sql", "--config", str(config)]) == 0
    script = capsys.readouterr().out
    assert "CREATE VIRTUAL TABLE messages_fts USING fts5" in script
    assert "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages" in script
    # and the script runs: sqlite3 builds the whole schema from it
    with sqlite3.connect(tmp_path / "offline.db") as db:
        db.executescript(script)
        db.execute("INSERT INTO messages (client_id, role, content, created_at) VALUES ('c', 'user', 'hi there', 0)")
        assert db.execute("SELECT rowid FROM messages_fts WHERE messages_fts MATCH 'there'").fetchall() == [(1,)]
