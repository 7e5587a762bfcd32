"""Compute-group credentials as the scheduler checks them.

A group is joined with a key and the ``eh1-`` hash of ``"<key> <secret>"``; on the wire each
group is ``{joinKey, joinHashHash}``, where ``joinHashHash = eh1(dcpsid + joinHash)`` binds the
credential to the task distributor's session, so it is computed for each request.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PUBLIC_GROUP", "ComputeGroup", "eh1", "request_groups"]


def eh1(text: str) -> str:
    """``eh1-`` and the hex keccak256 of the EIP-191 framing of ``text``."""
    # keccak is loaded on first use: the command line reads this module for every command.
    from dcp_worker.protocol.identity import personal_message_hash

    return "eh1-" + personal_message_hash(text.encode()).hex()


@dataclass(frozen=True, slots=True)
class ComputeGroup:
    """A compute group to join: its key and the ``eh1-`` hash of ``"<key> <secret>"``."""

    join_key: str
    join_hash: str

    @classmethod
    def from_secret(cls, join_key: str, join_secret: str) -> ComputeGroup:
        return cls(join_key, eh1(f"{join_key} {join_secret}"))


# The public (global) group has key "public" and an empty hash, which dcp-client, taking the empty
# string for "no hash", hashes as "public undefined". The scheduler expects that value. Written out
# (tests check it is eh1("public undefined")) so that importing this module loads no keccak.
PUBLIC_GROUP = ComputeGroup("public", "eh1-b478b8cf09c543a50954505775aaf3ff07fb5a1b41cbeecd85e8db1baec00ac9")


def request_groups(groups: tuple[ComputeGroup, ...], dcpsid: str, public: bool) -> list[dict[str, str]]:
    """``workerComputeGroups`` for a request on the session ``dcpsid``."""
    chosen = [*groups, PUBLIC_GROUP] if public else list(groups)
    return [{"joinKey": group.join_key, "joinHashHash": eh1(dcpsid + group.join_hash)} for group in chosen]
