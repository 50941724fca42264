"""``lock_scope="queue"``: a singleton from the moment it is queued, and the throttle window.

With ``lock_scope="queue"``, ``apply_async`` (so ``delay``, and beat for tasks registered in the
beat process) takes the lock for the new task id before the message is sent, for
``lock_queue_expiry`` seconds plus any ``countdown``/``eta`` delay. A duplicate call sends
nothing: it returns the holder's ``AsyncResult`` (``lock_on_duplicate="return"``) or raises
``DuplicateTask`` (``"raise"``).

Lock values say who holds the lock and at which stage (``<token>`` is random)::

    <task id>:q<attempt>:<token>    queued: the message of that attempt is on its way
    <task id>:<attempt>:<token>     running (as in "run" scope)

The run takes the lock over from its queued value (``Mutex.take_over``: one compare-and-set per
node), so the stage changes in one step and a second delivery of the same message (Redis
``visibility_timeout``, an ``eta`` beyond it) finds a running holder and is busy. A run that
ends with ``self.retry()`` leaves its lock to expire after ``lock_queue_expiry`` plus the retry's
countdown (``Mutex.release_after``); the retry takes it over from that earlier attempt::

    apply_async   lock T:q0:a (3600 s)  -> send
    attempt 0     take over T:q0:a -> T:0:b (auto-extended) ... self.retry(countdown=60)
                  -> T:0:b kept, expires in 3660 s
    attempt 1     take over T:0:b -> T:1:c ... returns -> unlock

If the queued lock is gone when the run starts (expired, released by an operator, a message
sent with ``send_task``), the run takes the lock as in "run" scope.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from celery.exceptions import Retry
from celery.signals import task_revoked

from redsync_core import (
    ConfigurationError,
    LockNotAcquired,
    LockTaken,
    Mutex,
    MutexOptions,
    RedsyncError,
)
from redsync_core.adapters import free_in

from .conf import get_redsync
from .signals import lock_busy

if TYPE_CHECKING:
    from .task import SingletonTask

__all__ = [
    "DUPLICATE_ACTIONS",
    "LOCK_SCOPES",
    "DuplicateTask",
    "check_plain_tasks",
    "check_scope_options",
    "enqueue",
    "finish_run",
    "parse_holder",
    "take_over_queued",
]

logger = logging.getLogger("redsync_celery")

LOCK_SCOPES = ("run", "queue")
DUPLICATE_ACTIONS = ("return", "raise")


class DuplicateTask(LockTaken):
    """``apply_async`` of a ``lock_scope="queue"`` task found its lock held: nothing was sent.

    ``task_id`` is the id of the task holding the lock (queued or running; None when the lock
    is held by something that is not a task of this adapter), ``retry_after`` the holder's
    remaining TTL in seconds when known. Holds only strings and numbers, so it pickles.
    """

    def __init__(
        self,
        name: str,
        message: str,
        task_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        RedsyncError.__init__(self, name, message, task_id, retry_after)
        self.name = name
        self.message = message
        self.task_id = task_id
        self.attempts = 1
        self.retry_after = retry_after
        self.nodes = ()


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_scope_options(
    cls: type[SingletonTask], bad: Callable[[str, object, str], Exception]
) -> None:
    """Validate ``lock_scope``, ``lock_on_duplicate``, ``lock_queue_expiry``, ``lock_hold_after``.

    Raises:
        ConfigurationError: (built by ``bad``) an option has the wrong type or value.
    """
    if cls.lock_scope not in LOCK_SCOPES:
        raise bad("lock_scope", cls.lock_scope, "'run' or 'queue'")
    if cls.lock_on_duplicate not in DUPLICATE_ACTIONS:
        raise bad("lock_on_duplicate", cls.lock_on_duplicate, "'return' or 'raise'")
    expiry = cls.lock_queue_expiry
    if not _number(expiry) or not expiry > 0 or not _valid_ttl(expiry):
        raise bad("lock_queue_expiry", expiry, "a number of seconds > 0 (a lock TTL)")
    hold = cls.lock_hold_after
    if not _number(hold) or not hold >= 0 or (hold > 0 and not _valid_ttl(hold)):
        raise bad("lock_hold_after", hold, "a number of seconds >= 0 (0: release at once)")


def _valid_ttl(seconds: float) -> bool:
    """True when the core accepts ``seconds`` as a lock TTL (not too long, not too fine)."""
    try:
        MutexOptions.build({"expiry": seconds})
    except ConfigurationError:
        return False
    return True


def check_plain_tasks(app: Any) -> None:
    """Refuse singleton options on a task that is not a ``SingletonTask``.

    ``@app.task(lock_hold_after=60)`` without ``base=SingletonTask`` makes a plain task with an
    attribute that nothing reads: the task would run unlocked. Checked when a worker of an app
    with at least one ``SingletonTask`` starts (other apps may use such names for their own).

    Raises:
        ConfigurationError: such a task exists (the message names it and the options).
    """
    from .task import SingletonTask

    options = sorted(n for n in vars(SingletonTask) if n.startswith("lock_"))
    for task in app.tasks.values():
        if isinstance(task, SingletonTask):
            continue
        found = [n for n in options if n in vars(type(task))]
        if found:
            raise ConfigurationError(
                f"Task {task.name!r} has the option(s) {', '.join(found)} but is not a "
                "SingletonTask, so nothing reads them and it runs unlocked. Add "
                "base=SingletonTask to its @app.task(...), or remove the options."
            )


def parse_holder(holder: str | None) -> tuple[str | None, int | None, bool]:
    """Split a lock value into (task id, attempt, queued); (None, None, False) if not ours."""
    if holder is None:
        return None, None, False
    task_id, _, rest = holder.partition(":")
    stage, _, _ = rest.partition(":")
    queued = stage.startswith("q")
    attempt = stage[1:] if queued else stage
    if not task_id or not attempt.isdigit():
        return None, None, False
    return task_id, int(attempt), queued


def _delay(options: Mapping[str, Any]) -> float:
    """Return the seconds until a message sent with ``options`` may run (countdown or eta)."""
    countdown = options.get("countdown")
    if isinstance(countdown, (int, float)):
        return max(0.0, float(countdown))
    eta = options.get("eta")
    if isinstance(eta, str):
        try:
            eta = dt.datetime.fromisoformat(eta)
        except ValueError:
            return 0.0  # Celery parses it its own way; the queue expiry still applies
    if isinstance(eta, dt.datetime):
        if eta.tzinfo is None:  # Celery reads a naive eta as UTC (enable_utc)
            eta = eta.replace(tzinfo=dt.timezone.utc)
        return max(0.0, (eta - dt.datetime.now(dt.timezone.utc)).total_seconds())
    return 0.0


def enqueue(
    task: SingletonTask,
    send: Callable[..., Any],
    args: Sequence[Any] | None,
    kwargs: Mapping[str, Any] | None,
    task_id: str,
    options: dict[str, Any],
) -> Any:
    """Take the queue lock for ``task_id``, then ``send`` the message; on a duplicate, return
    the holder's ``AsyncResult`` or raise ``DuplicateTask``.

    Raises:
        DuplicateTask: the lock is held and ``lock_on_duplicate="raise"``.
        QuorumUnreachable: too few lock nodes answer: nothing is sent.
    """
    name = task.lock_name_for(args or (), kwargs or {})
    redsync = get_redsync(task.app)
    token = secrets.token_urlsafe(12)
    expiry = float(task.lock_queue_expiry) + _delay(options)
    busy: LockNotAcquired | None = None
    for _attempt in range(2):  # a second try only if the holder left between lock and inspect
        held = redsync.hold(
            name,
            expiry=expiry,
            auto_extend=False,
            gen_value_func=lambda: f"{task_id}:q0:{token}",
        )
        if not held.acquire():
            busy = held.busy
            assert busy is not None  # set by a failed acquire()
            holder = redsync.inspect(name).holder
            if holder is None:
                continue
            return _duplicate(task, name, holder, busy)
        try:
            return send(args, kwargs, task_id=task_id, **options)
        except BaseException:
            held.release()  # nothing was queued: there is nothing to protect
            raise
    assert busy is not None  # both attempts found the lock held
    return _duplicate(task, name, None, busy)


def _duplicate(task: SingletonTask, name: str, holder: str | None, exc: LockNotAcquired) -> Any:
    holder_id, _, _ = parse_holder(holder)
    action = task.lock_on_duplicate
    lock_busy.send(
        sender=task,
        task_id=None,
        lock_name=name,
        holder=holder_id,
        retry_after=exc.retry_after,
        action="duplicate",
    )
    if action == "return" and holder_id is not None:
        logger.info(
            "Not queued %s: lock %r is held by task %s; returning its result.",
            task.name,
            name,
            holder_id,
        )
        return task.AsyncResult(holder_id)
    held_by = f"task {holder_id}" if holder_id else "a holder that is not a task"
    raise DuplicateTask(
        name,
        f"Task {task.name} was not queued: lock {name!r} is held by {held_by}, queued or "
        f"running ({free_in(exc.retry_after)}). Wait for it (lock_on_duplicate='return' "
        "gives its AsyncResult) or release the lock (redsync release --force) if that task "
        "is gone.",
        holder_id,
        exc.retry_after,
    )


def take_over_queued(task: SingletonTask, name: str, request: Any) -> Mutex | None:
    """Take the lock over from this task's queued value or an earlier attempt; None when the
    lock holds neither (then the run takes it as in "run" scope)."""
    holder = get_redsync(task.app).inspect(name).holder
    holder_id, attempt, queued = parse_holder(holder)
    retries = request.retries or 0
    if holder is None or holder_id != request.id or attempt is None:
        return None
    if not (attempt < retries or (queued and attempt <= retries)):
        return None  # this very attempt already runs: a second delivery of its message
    mutex = task.run_mutex(name, request)
    return mutex if mutex.take_over(holder) else None


def finish_run(task: SingletonTask, mutex: Mutex, outcome: BaseException | None) -> None:
    """Release the lock at the end of a run, or keep it: for the retry of a queue-scope task,
    or for the throttle window after a success (``lock_hold_after``)."""
    if isinstance(outcome, Retry) and task.lock_scope == "queue":
        mutex.release_after(float(task.lock_queue_expiry) + _retry_delay(outcome))
    elif outcome is None and task.lock_hold_after > 0:
        mutex.release_after(float(task.lock_hold_after))
    else:
        mutex.unlock()


def _retry_delay(retry: Retry) -> float:
    when = retry.when
    if isinstance(when, (int, float)):
        return max(0.0, float(when))
    if isinstance(when, dt.datetime):
        return _delay({"eta": when})
    return 0.0


def _release_revoked(
    sender: Any = None, request: Any = None, terminated: bool = False, **_: Any
) -> None:
    """Release the queued lock of a task revoked (or expired) before it ran."""
    from .task import SingletonTask

    if terminated or not isinstance(sender, SingletonTask) or sender.lock_scope != "queue":
        return
    task_id = getattr(request, "id", None)
    try:
        name = sender.lock_name_for(request.args, request.kwargs)
    except (RedsyncError, TypeError, AttributeError):
        return
    redsync = get_redsync(sender.app)
    holder = redsync.inspect(name).holder
    holder_id, _attempt, queued = parse_holder(holder)
    if holder is None or holder_id != task_id or not queued:
        return
    if redsync.new_mutex(name, value=holder).unlock():
        logger.info("Released queued lock %r of revoked task %s[%s].", name, sender.name, task_id)


task_revoked.connect(_release_revoked, weak=False)
