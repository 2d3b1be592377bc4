"""A throwaway user and virtual host on a private node, and the CPU time of a process."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from tests.support.rabbit_nodes import RabbitNode

__all__ = ["Account", "account", "cpu_seconds"]


@dataclass(frozen=True)
class Account:
    node: RabbitNode
    user: str
    password: str
    vhost: str

    @property
    def url(self) -> str:
        return self.node.url_for(self.user, self.password, self.vhost)

    async def set_permissions(self, configure: str, write: str, read: str) -> None:
        await asyncio.to_thread(
            self.node.ctl, "set_permissions", "-p", self.vhost, self.user, configure, write, read
        )

    async def close_connections(self) -> None:
        """Close every connection of this user (a permission change takes effect then)."""
        await asyncio.to_thread(
            self.node.ctl, "close_all_connections", "-p", self.vhost, "permissions changed"
        )


@asynccontextmanager
async def account(
    node: RabbitNode, configure: str = ".*", write: str = ".*", read: str = ".*"
) -> AsyncIterator[Account]:
    """A new user with ``configure``/``write``/``read`` permissions on a new vhost."""
    tag = uuid.uuid4().hex[:8]
    created = Account(node, f"user-{tag}", f"pw-{tag}", f"vhost-{tag}")
    await asyncio.to_thread(node.ctl, "add_vhost", created.vhost)
    await asyncio.to_thread(node.ctl, "add_user", created.user, created.password)
    try:
        await created.set_permissions(configure, write, read)
        yield created
    finally:
        await asyncio.to_thread(node.ctl, "delete_user", created.user)
        await asyncio.to_thread(node.ctl, "delete_vhost", created.vhost)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
