"""`TokenStore` on SQLite: one row per id token."""

from __future__ import annotations

from services.common.store.port import Token
from services.common.store.rows import TOKEN_COLUMNS, token_from_row, token_values
from services.common.store.sqlite.connection import SqliteConnection, time_in, time_out

__all__ = ["SqliteTokens"]

_GET = f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE id_token = ?"
_PUT = f"""INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (id_token) DO UPDATE SET
                status = excluded.status,
                expires_at = excluded.expires_at,
                group_id = excluded.group_id,
                updated_at = excluded.updated_at"""
_LIST = f"SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id_token LIMIT ?"


class SqliteTokens(SqliteConnection):
    async def get_token(self, id_token: str) -> Token | None:
        rows = await self._fetch("get_token", _GET, (id_token,))
        return token_from_row(rows[0], time_in) if rows else None

    async def put_token(self, token: Token) -> None:
        await self._write("put_token", _PUT, token_values(token, time_out))

    async def delete_token(self, id_token: str) -> bool:
        return await self._write("delete_token", "DELETE FROM tokens WHERE id_token = ?", (id_token,)) > 0

    async def list_tokens(self, *, limit: int = 1000) -> list[Token]:
        return [token_from_row(r, time_in) for r in await self._fetch("list_tokens", _LIST, (max(0, limit),))]
