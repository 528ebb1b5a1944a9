"""`TokenStore` on Cassandra: one row per id token."""

from __future__ import annotations

from cassandra import ConsistencyLevel
from cassandra.query import SimpleStatement

from services.common.store.cassandra.connection import CassandraConnection, time_in, time_out
from services.common.store.port import Token
from services.common.store.rows import TOKEN_COLUMNS, token_from_row, token_values

__all__ = ["CassandraTokens"]


class CassandraTokens(CassandraConnection):
    async def get_token(self, id_token: str) -> Token | None:
        row = (await self._run(self._prep("get_token", f"SELECT {TOKEN_COLUMNS} FROM tokens WHERE id_token = ?"), (id_token,))).one()
        return token_from_row(row, time_in) if row else None

    async def put_token(self, token: Token) -> None:
        ps = self._prep("put_token", f"INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES (?,?,?,?,?)")
        await self._run(ps, token_values(token, time_out))

    async def delete_token(self, id_token: str) -> bool:
        existed = await self.get_token(id_token) is not None
        await self._run(self._prep("del_token", "DELETE FROM tokens WHERE id_token = ?"), (id_token,))
        return existed

    async def list_tokens(self, *, limit: int = 1000) -> list[Token]:
        cql = f"SELECT {TOKEN_COLUMNS} FROM tokens LIMIT {int(limit)}"
        rows = await self._run(SimpleStatement(cql, consistency_level=ConsistencyLevel.LOCAL_QUORUM))
        return sorted((token_from_row(r, time_in) for r in rows), key=lambda t: t.id_token)
