"""The Redis command behind each fan-out, and the decoding of its reply into a ``NodeReply``.

Shared by the sync and asyncio transports so that both speak exactly the same protocol.

Most effects are one command (a Lua script by EVALSHA, or a plain command) with one reply.
An ACQUIRE with a fresh value and no waiter (``FanOut.fresh``: ``try_lock()``, the first
attempt of a ``lock()`` that does not queue) is two plain commands written together, ``SET key
value NX PX ttl`` then ``PTTL key``: one write and one round trip per node, without the
script's cost on the server. A ``Command`` says how many replies its node sends
(``Command.replies``); every transport reads that many before the node counts as answered,
and ``decode`` takes them as one list.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .._algorithm.effects import (
    MISSING,
    OK,
    TAKEN,
    Batch,
    FanOut,
    KeyState,
    NodeReply,
    Op,
    ScanPage,
    Status,
)
from .._algorithm.family import combine_split
from .._algorithm.fencing import fence_key
from .._algorithm.queues import queue_keys, queue_member
from .._exceptions import NodeError
from .scripts import (
    ACQUIRE,
    ACQUIRE_ALL,
    ACQUIRE_ANY,
    DELETE,
    EXTEND,
    EXTEND_ALL,
    EXTEND_MANY,
    FENCE,
    FENCED_ACQUIRE,
    GET_ALL,
    INSPECT,
    LEAVE,
    RELEASE,
    RELEASE_ALL,
    SCAN_PAGE,
    SWAP,
    Script,
    decode_foreign_ttl,
)

__all__ = [
    "Command",
    "Decoder",
    "Reply",
    "Single",
    "UnexpectedReply",
    "command",
    "decided",
    "decode",
    "decoder",
    "drive_split",
    "new_reader",
    "next_reply",
    "notice_payload",
    "pack",
    "packed",
    "prepare",
    "spans_slots",
    "split_batch",
]

Arg = str | int
Args = tuple[Arg, ...]

#: A listing reads string values up to this many bytes; a longer one is no lock value (lock
#: values are tens of bytes) and is skipped, so a page's reply stays small.
MAX_LISTED_VALUE = 1024
Single = NodeReply | NodeError | None
"""One node's reply to a single fan-out (None: not waited for, fail fast)."""
Reply = NodeReply | tuple[NodeReply, ...] | NodeError | None
"""One node's reply to a fan-out: a batch gets one NodeReply per effect."""

#: How long (ms) the first attempt of a new lock() call leaves a free key to the waiter that a
#: release woke: about the time a woken waiter takes to try, well under the retry delay.
TURN_MS = 20


class UnexpectedReply(ValueError):
    """A node answered with a reply of the wrong type (a misbehaving or foreign server)."""


def notice_payload(value: str) -> str:
    """Return the payload of a release notice: a short digest of the released value.

    The same release reaches a waiter once per node; equal payloads let it count them as one.
    The value itself is never published (it lets its holder release the lock). The release
    script appends the ids of the queued waiters it wakes (``<digest> <id>``).
    """
    return hashlib.blake2s(value.encode("utf-8", "surrogateescape"), digest_size=6).hexdigest()


class Command(NamedTuple):
    """What one node is sent for an effect, in one write: ``script`` (None: ``args`` is a
    plain command) run with ``args`` (after the script's SHA: ``numkeys, key, argv...``), then
    the plain commands of ``then``. The node answers each in turn: ``replies`` replies, one per
    command (``1 + len(then)``; a field, read for every node of every fan-out)."""

    script: Script | None
    args: Args
    then: tuple[Args, ...] = ()
    replies: int = 1

    def commands(self) -> list[Args]:
        """Every command as sent (a script by EVALSHA), in order."""
        first = self.args if self.script is None else ("EVALSHA", self.script.sha, *self.args)
        return [first, *self.then]

    def encode(self) -> bytes:
        """Return every command in RESP, for one write."""
        if not self.then:  # one command: no list, no join
            script = self.script
            return pack(*self.args) if script is None else pack("EVALSHA", script.sha, *self.args)
        return b"".join(pack(*args) for args in self.commands())


def _is_plain(effect: FanOut) -> bool:
    """Return True for an ACQUIRE sent as SET NX PX and PTTL instead of the script: its value is
    fresh (no key can hold it: nothing to re-arm) and it has no waiter to queue."""
    return effect.fresh and effect.waiter is None and effect.op is Op.ACQUIRE


def command(effect: FanOut | Batch, sharded: bool = False) -> Command:
    """Return the command(s) that carry out ``effect`` on one node.

    Deletes publish a release notice, on a sharded channel when ``sharded`` (Redis Cluster).
    """
    if isinstance(effect, FanOut) and _is_plain(effect):
        key = effect.key
        then = (("PTTL", key),)
        return Command(
            None, ("SET", key, effect.value, "NX", "PX", effect.ttl_ms), then, 1 + len(then)
        )
    return Command(*_one_command(effect, sharded))


def _one_command(effect: FanOut | Batch, sharded: bool) -> tuple[Script | None, Args]:
    """Return the script (or None) and the arguments of the one command for ``effect``."""
    if isinstance(effect, Batch):
        items = effect.effects
        argv: list[Arg] = []
        for item in items:
            argv += [item.value, item.ttl_ms]
        return EXTEND_MANY, (len(items), *(item.key for item in items), *argv)
    op = effect.op
    if op in _MULTI_KEY:
        return _multi_key_command(effect, sharded)
    if op is Op.ACQUIRE:
        waiter = effect.waiter
        queue = None if waiter is None else queue_keys(effect.key)
        if waiter is None or queue is None:
            return ACQUIRE, (1, effect.key, effect.value, effect.ttl_ms)
        queued = "1" if effect.queued else "0"
        member = queue_member(waiter.id, effect.ttl_ms, effect.value)
        return ACQUIRE, (
            3,
            effect.key,
            *queue,
            effect.value,
            effect.ttl_ms,
            member,
            waiter.rank,
            queued,
        )
    if op is Op.RELEASE:
        notice = ("s" if sharded else "p", notice_payload(effect.value))
        queue = queue_keys(effect.key)
        if queue is None:
            return RELEASE, (1, effect.key, effect.value, *notice)
        wake = (1 if effect.wake else 0, TURN_MS)
        waiter = effect.waiter
        if waiter is None:
            return RELEASE, (3, effect.key, *queue, effect.value, *notice, *wake)
        member = queue_member(waiter.id, effect.ttl_ms, effect.value)
        then = ("leave", member) if effect.queued else ("queue", member, waiter.rank, effect.ttl_ms)
        return RELEASE, (3, effect.key, *queue, effect.value, *notice, *wake, *then)
    if op is Op.LEAVE:
        queue = queue_keys(effect.key)
        if effect.waiter is None or queue is None:
            return None, ("PING",)  # a key without a queue: nothing to take off
        notice = ("s" if sharded else "p", "left")
        hand_on = "1" if effect.wake else "0"
        member = queue_member(effect.waiter.id, effect.ttl_ms, effect.value)
        return LEAVE, (3, effect.key, *queue, *notice, member, TURN_MS, hand_on)
    if op is Op.EXTEND:
        return EXTEND, (1, effect.key, effect.value, effect.ttl_ms, "1" if effect.set_nx else "0")
    if op is Op.SWAP:
        return SWAP, (1, effect.key, effect.replaces, effect.value, effect.ttl_ms)
    if op is Op.INSPECT:
        return INSPECT, (1, effect.key)
    if op is Op.DELETE:
        queue = queue_keys(effect.key)
        notice = ("s" if sharded else "p", "forced")
        if queue is None:
            return DELETE, (1, effect.key, *notice)
        return DELETE, (3, effect.key, *queue, *notice, 1, TURN_MS)
    if op is Op.SCAN:
        return SCAN_PAGE, (0, effect.cursor, effect.key, effect.page_size, MAX_LISTED_VALUE)
    if op is Op.FENCED_ACQUIRE:
        return FENCED_ACQUIRE, (2, effect.key, fence_key(effect.key), effect.value, effect.ttl_ms)
    if op is Op.FENCE:
        return FENCE, (2, effect.key, fence_key(effect.key), effect.value, effect.token)
    return None, ("GET", effect.key)


_MULTI_KEY = {
    Op.ACQUIRE_ANY: ACQUIRE_ANY,
    Op.ACQUIRE_ALL: ACQUIRE_ALL,
    Op.RELEASE_ALL: RELEASE_ALL,
    Op.EXTEND_ALL: EXTEND_ALL,
    Op.GET_ALL: GET_ALL,
}


def _multi_key_command(effect: FanOut, sharded: bool) -> tuple[Script, tuple[Arg, ...]]:
    keys = effect.keys or (effect.key,)
    argv: tuple[Arg, ...] = (effect.value,)
    if effect.op in (Op.ACQUIRE_ANY, Op.ACQUIRE_ALL):
        argv += (effect.ttl_ms,)
    elif effect.op is Op.EXTEND_ALL:
        argv += (effect.ttl_ms, "1" if effect.set_nx else "0")
    elif effect.op is Op.RELEASE_ALL:
        argv += ("s" if sharded else "p", notice_payload(effect.value))
    return _MULTI_KEY[effect.op], (len(keys), *keys, *argv)


def _pack_python(*args: Arg) -> bytes:
    """Encode one command in RESP (our arguments are only str and int)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _pack_hiredis(*args: Arg) -> bytes:
    packed: bytes = hiredis.pack_command(args)  # type: ignore[arg-type]  # ints pack as decimals
    return packed


try:
    import hiredis
except ImportError:  # the optional C extension: packs and parses faster when installed
    pack = _pack_python
    _Reader: Any = None
else:
    _Reader = getattr(hiredis, "Reader", None)
    # pack_command came after hiredis 2.0, which the extra still allows: encode in Python there.
    pack = _pack_hiredis if hasattr(hiredis, "pack_command") else _pack_python


#: What a reader from ``new_reader`` returns while a reply is incomplete.
PENDING: Any = object()


def new_reader(reply_error: Callable[[str], Exception]) -> Any | None:
    """Return a hiredis reply reader (error replies made by ``reply_error``), or None when
    hiredis is missing or too old to tell an incomplete reply apart (``notEnoughData``)."""
    if _Reader is None:
        return None
    try:
        return _Reader(protocolError=UnexpectedReply, replyError=reply_error, notEnoughData=PENDING)
    except TypeError:
        return None


def next_reply(reader: Any) -> Any:
    """Return the next whole reply fed to ``reader`` (``PENDING`` while there is none).

    Raises:
        ResponseError: (the client library's) the reply is an error; raised from here, so no
            caller's frame holds it (its traceback would hold that frame: a cycle that keeps
            a connection open until the garbage collector runs).
        UnexpectedReply: the bytes are not RESP.
    """
    reply = reader.gets()
    if isinstance(reply, Exception):
        try:
            raise reply
        finally:
            del reply
    return reply


def _text(reply: object) -> str | None:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "surrogateescape")
    if isinstance(reply, str):
        return reply
    return None


def decode_script_code(reply: object) -> NodeReply:
    """Decode a script's integer reply: 1 ours, 0 missing, negative another holder's TTL."""
    # A plain int (what the reader returns) is checked without isinstance calls.
    if (
        type(reply) is not int and (not isinstance(reply, int) or isinstance(reply, bool))
    ) or reply > 1:
        raise UnexpectedReply(f"unexpected reply {reply!r:.40} to a lock script")
    if reply == 1:
        return OK
    if reply == 0:
        return MISSING
    taken = _taken_replies.get(reply)
    if taken is None:
        if len(_taken_replies) >= 16:
            _taken_replies.clear()
        taken = _taken_replies[reply] = NodeReply(TAKEN.status, decode_foreign_ttl(reply))
    return taken


def decode_plain_acquire(replies: object) -> NodeReply:
    """Decode the replies to SET NX PX and PTTL (a plain acquire) as the script's code would be.

    SET answers OK (redis-py's callback: True) when it set the key, nil when the key exists;
    PTTL then gives the holder's TTL (-1: no expiry; -2: the key went between the two commands,
    so TAKEN with TTL 0, as the script answers for a key gone: never OK, never MISSING).

    Raises:
        UnexpectedReply: a reply that SET or PTTL never sends.
    """
    # Type checks without isinstance calls (bool is not int here): every node of every try.
    if type(replies) is list and len(replies) == 2:
        done, pttl = replies
        if type(pttl) is int and pttl >= -2:
            if done is None:
                return decode_script_code(-1 if pttl == -1 else -2 - max(pttl, 0))
            if done is True or done in _SET_OK:
                return OK
    raise UnexpectedReply(f"unexpected reply {replies!r:.40} to SET NX PX and PTTL")


_SET_OK = (b"OK", "OK")

# The "taken" replies decoded lately, by code. The nodes of one fan-out answer the holder's
# PTTL to within a millisecond or two, and replies are immutable: they share a few objects
# instead of building one each.
_taken_replies: dict[int, NodeReply] = {}


#: The operations whose reply is a lock script's integer code (the others are decoded below).
_CODED = frozenset(Op) - {
    Op.ACQUIRE_ANY,
    Op.GET,
    Op.INSPECT,
    Op.DELETE,
    Op.SCAN,
    Op.FENCED_ACQUIRE,
}


#: Turns one node's raw reply into its ``NodeReply`` (one per item of a batch).
Decoder = Callable[[object], "NodeReply | tuple[NodeReply, ...]"]


def decoder(effect: FanOut | Batch) -> Decoder:
    """Return ``decode`` for ``effect``'s replies, chosen once per fan-out: a plain acquire's
    and the lock scripts' decoders themselves (the nodes' replies skip the dispatch)."""
    return _reply_decoder(effect) or functools.partial(_decode_other, effect)


def decode(effect: FanOut | Batch, reply: object) -> NodeReply | tuple[NodeReply, ...]:
    """Turn one node's raw reply to ``command(effect)`` into a ``NodeReply`` (one per item of a
    batch).

    Raises:
        UnexpectedReply: the reply has a type this command never returns.
    """
    chosen = _reply_decoder(effect)
    return _decode_other(effect, reply) if chosen is None else chosen(reply)


def _reply_decoder(effect: FanOut | Batch) -> Decoder | None:
    """The decoder of a plain acquire's or a lock script's reply; None for the others."""
    if isinstance(effect, FanOut):
        if effect.fresh and _is_plain(effect):
            return decode_plain_acquire
        if effect.op in _CODED:
            return decode_script_code
    return None


def _decode_other(effect: FanOut | Batch, reply: object) -> NodeReply | tuple[NodeReply, ...]:
    """``decode`` for the effects that ``_reply_decoder`` leaves out."""
    if isinstance(effect, Batch):
        if not isinstance(reply, list) or len(reply) != len(effect.effects):
            raise UnexpectedReply(f"unexpected reply {reply!r:.40} to a batch extension")
        return tuple(decode_script_code(code) for code in reply)
    op = effect.op
    if op is Op.ACQUIRE_ANY:
        return _decode_acquire_any(effect, reply)
    if op is Op.GET:
        if reply is None:
            return MISSING
        text = _text(reply)
        if text is None:
            raise UnexpectedReply(f"unexpected reply {reply!r:.40} to GET")
        return OK if text == effect.value else TAKEN
    if op is Op.INSPECT:
        return _decode_inspect(effect, reply)
    if op is Op.LEAVE:
        return OK
    if op is Op.DELETE:
        if not isinstance(reply, int):
            raise UnexpectedReply(f"unexpected reply {reply!r:.40} to DEL")
        return OK if reply else MISSING
    if op is Op.SCAN:
        return NodeReply(Status.OK, page=_decode_scan_page(reply))
    if op is Op.FENCED_ACQUIRE and isinstance(reply, list):
        if len(reply) != 2 or reply[0] != 1 or not isinstance(reply[1], int) or reply[1] < 0:
            raise UnexpectedReply(f"unexpected reply {reply!r:.40} to a fenced acquisition")
        return NodeReply(Status.OK, counter=reply[1])
    if op is Op.FENCED_ACQUIRE and reply == 1:  # {1, counter} is the only "set" reply
        raise UnexpectedReply(f"unexpected reply {reply!r:.40} to a fenced acquisition")
    return decode_script_code(reply)


_Made = tuple[FanOut | Batch | None, bool, tuple[Command, bytes, Decoder]]
_NOTHING: _Made = (None, False, (Command(None, ()), b"", decode_script_code))


class _Packed(threading.local):
    """The last command packed by this thread: a fan-out sends the same bytes to every node.

    ``last``: (effect, sharded, (command, bytes, decoder)), read in one thread-local lookup;
    ``ready``: the same for the command of a fan-out to come (``prepare``).
    """

    last: _Made = _NOTHING
    ready: _Made = _NOTHING


_packed = _Packed()


def _made(effect: FanOut | Batch, sharded: bool) -> _Made:
    sent = command(effect, sharded)
    return (effect, sharded, (sent, sent.encode(), decoder(effect)))


def packed(effect: FanOut | Batch, sharded: bool = False) -> tuple[Command, bytes, Decoder]:
    """Return ``command(effect, sharded)``, its bytes (``Command.encode``) and
    ``decoder(effect)``, made once per fan-out: the nodes of one fan-out are asked the same
    thing in turn by the same thread. An equal fan-out made ready by ``prepare`` is not
    packed again."""
    last = _packed.last
    if last[0] is not effect or last[1] is not sharded:
        ready = _packed.ready
        if ready[0] == effect and ready[1] is sharded:
            _packed.ready = _NOTHING
            last = _packed.last = (effect, sharded, ready[2])
        else:
            last = _packed.last = _made(effect, sharded)
    return last[2]


def prepare(effect: FanOut, sharded: bool = False) -> None:
    """Pack ``effect`` now for a fan-out of an equal effect to come in this thread (one at a
    time; for asyncio, the last task to prepare): a waiting ``lock()`` call makes its unlock's
    release ready while it sleeps, so that the unlock sends at once (a hand-off's path)."""
    if _packed.ready[0] != effect or _packed.ready[1] is not sharded:
        _packed.ready = _made(effect, sharded)


def _decode_acquire_any(effect: FanOut, reply: object) -> NodeReply:
    """Decode ACQUIRE_ANY: i >= 1 took ``keys[i - 1]``; negative: every key held by others."""
    count = len(effect.keys or (effect.key,))
    if not isinstance(reply, int) or isinstance(reply, bool) or reply == 0 or reply > count:
        raise UnexpectedReply(f"unexpected reply {reply!r:.40} to the permit script")
    if reply > 0:
        return NodeReply(Status.OK, slot=reply - 1)
    return NodeReply(Status.TAKEN, decode_foreign_ttl(reply))


def _decode_inspect(effect: FanOut, reply: object) -> NodeReply:
    if not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[1], int):
        raise UnexpectedReply(f"unexpected reply {reply!r:.40} to the inspect script")
    holder = _text(reply[0])
    if holder is None:
        return MISSING
    ttl_ms = reply[1] if reply[1] >= 0 else None
    status = Status.OK if holder == effect.value else Status.TAKEN
    return NodeReply(status, ttl_ms, holder)


def _decode_scan_page(reply: object) -> ScanPage:
    cursor = _text(reply[0]) if isinstance(reply, list) and reply else None
    if cursor is None or not cursor.isdigit():
        raise UnexpectedReply(f"unexpected reply {reply!r:.40} to the scan script")
    assert isinstance(reply, list)
    keys = []
    for entry in reply[1:]:
        if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[3], int):
            raise UnexpectedReply(f"unexpected entry {entry!r:.40} in a scan page")
        key, kind = _text(entry[0]), _text(entry[1])
        if key is None or kind is None:
            raise UnexpectedReply(f"unexpected entry {entry!r:.40} in a scan page")
        ttl_ms = entry[3] if entry[3] >= 0 else None
        keys.append(KeyState(key, kind, _text(entry[2]), ttl_ms))
    return ScanPage(int(cursor), tuple(keys))


def split_batch(batch: Batch, replies: Sequence[Reply]) -> list[tuple[Single, ...]]:
    """Turn per-node batch replies into per-effect replies (one tuple per batched FanOut)."""
    return [
        tuple(r[j] if isinstance(r, tuple) else r for r in replies)
        for j in range(len(batch.effects))
    ]


def decided(replies: Sequence[Reply], stop_at: int) -> bool:
    """Return True once ``stop_at`` nodes answered OK, or ``stop_at`` answered TAKEN (fail fast)."""
    ok = taken = 0
    for r in replies:
        if isinstance(r, NodeReply):
            if r.status is Status.OK:
                ok += 1
            elif r.status is Status.TAKEN:
                taken += 1
    return ok >= stop_at or taken >= stop_at


def spans_slots(effect: FanOut | Batch, slot_of: Callable[[str], int]) -> bool:
    """Return True for a multi-key fan-out whose keys live in several Redis Cluster slots."""
    if isinstance(effect, Batch) or len(effect.keys) < 2:
        return False
    first = slot_of(effect.keys[0])
    return any(slot_of(key) != first for key in effect.keys[1:])


def drive_split(
    effect: FanOut, slot_of: Callable[[str], int], run: Callable[[FanOut], NodeReply]
) -> NodeReply:
    """Carry out a multi-key ``effect`` one slot at a time with ``run`` (see ``combine_split``)."""
    steps = combine_split(effect, slot_of)
    part = next(steps)
    while True:
        try:
            part = steps.send(run(part))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
