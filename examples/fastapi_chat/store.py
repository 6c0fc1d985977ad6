"""The chat's own database: sessions, room memberships and messages, in SQLite (stdlib
``sqlite3``, each call run in a thread so that the event loop never waits on the disk)."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from pathlib import Path
from typing import Any

SCHEMA = """
create table if not exists sessions (sid text primary key, user text not null);
create table if not exists members (room text not null, user text not null,
                                    primary key (room, user));
create table if not exists messages (id integer primary key autoincrement, room text not null,
                                     user text not null, text text not null,
                                     at integer not null default (strftime('%s', 'now')));
"""


class Store:
    """One SQLite file, shared by the app's routes and the gateway's hooks."""

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    async def _run(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        def run() -> list[sqlite3.Row]:
            with self._lock:
                return self._db.execute(sql, args).fetchall()

        return await asyncio.to_thread(run)

    async def log_in(self, user: str) -> str:
        """A new session for ``user`` (who joins the lobby); its id, for the cookie."""
        sid = secrets.token_urlsafe(24)
        await self._run("insert into sessions values (?, ?)", sid, user)
        await self.join("lobby", user)
        return sid

    async def user_of(self, sid: str | None) -> str | None:
        if not sid:
            return None
        rows = await self._run("select user from sessions where sid = ?", sid)
        return str(rows[0]["user"]) if rows else None

    async def join(self, room: str, user: str) -> None:
        await self._run("insert or ignore into members values (?, ?)", room, user)

    async def is_member(self, room: str, user: str | None) -> bool:
        rows = await self._run("select 1 from members where room = ? and user = ?", room, user)
        return bool(rows)

    async def save(self, room: str, user: str, text: str) -> None:
        await self._run(
            "insert into messages (room, user, text) values (?, ?, ?)", room, user, text
        )

    async def messages(self, room: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._run(
            "select user, text from messages where room = ? order by id desc limit ?", room, limit
        )
        return [{"by": row["user"], "text": row["text"]} for row in reversed(rows)]
