"""``SingletonTask``: a Celery task whose runs with the same lock name never overlap.

The lock is taken in the process that runs the task body (a worker child, a thread of the
``threads`` pool, or the caller in eager mode), auto-extended while the body runs and released
when it ends, however it ends. Its value is ``"<task id>:<attempt>:<token>"``, so operators see
which task holds it, and the worker's parent process can release the lock of a child that died
(``SingletonRequest``) without ever touching another run's lock.

Timeline of a retry (``self.retry(countdown=0)``) that another worker picks up at once::

    attempt 0   lock "id:0:x" ... publish retry -> raise Retry -> unlock
    attempt 1                        lock? held by "id:0:x" -> an earlier attempt of this very
                                     task, already leaving: wait up to lock_expiry, then run

A duplicate delivery of the *same* attempt (Redis ``visibility_timeout``, ``acks_late``) finds
a holder with its own attempt number and is busy like any other duplicate.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import random
import secrets
import select
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

import celery
from billiard.einfo import ExceptionWithTraceback
from billiard.exceptions import Terminated, WorkerLostError
from celery.exceptions import Ignore
from celery.utils import uuid
from celery.worker.request import Request

from redsync_core import (
    ConfigurationError,
    Hold,
    LockNotAcquired,
    LockTaken,
    Mutex,
    arguments_digest,
    hooks,
    render_lock_name,
)
from redsync_core.adapters import check_limit, check_wait, free_in

from .conf import get_redsync, get_settings
from .queue import check_scope_options, enqueue, finish_run, take_over_queued
from .signals import lock_busy, lock_lost

__all__ = ["BUSY_ACTIONS", "SingletonRequest", "SingletonTask", "release_dead_holder"]

logger = logging.getLogger("redsync_celery")

BUSY_ACTIONS = ("skip", "retry", "raise")
RETRY_JITTER = (0.1, 1.0)  # seconds added at random to a "retry" countdown (spreads the herd)


def _static(owner: object, attribute: str) -> Any:
    """Return a class attribute as stored: a callable given to ``@app.task(lock_name=f)``
    becomes a class attribute, and must not be bound to the task like a method."""
    value = inspect.getattr_static(owner, attribute)
    return value.__func__ if isinstance(value, staticmethod) else value


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_options(cls: type[SingletonTask]) -> None:
    """Validate the ``lock_*`` options of a task class.

    Raises:
        ConfigurationError: an option has the wrong type or value (the message names it).
    """
    task = getattr(cls, "name", None) or cls.__qualname__

    def bad(option: str, value: object, expected: str) -> ConfigurationError:
        return ConfigurationError(
            f"Invalid task option {option}={value!r:.60} for task {task!r}: expected {expected}."
        )

    name = _static(cls, "lock_name")
    if not (
        name is None
        or (isinstance(name, str) and name)
        or callable(name)
        or (
            isinstance(name, (list, tuple))
            and all(isinstance(n, str) and n.isidentifier() for n in name)
        )
    ):
        raise bad(
            "lock_name",
            name,
            "None (task name + digest of all arguments), a template such as 'sync:{account_id}', "
            "a list of argument names, or a callable taking the task's arguments",
        )
    expiry = cls.lock_expiry
    if expiry is not None and (not _number(expiry) or not expiry > 0):
        raise bad("lock_expiry", expiry, "a number of seconds > 0, or None for the app default")
    try:
        check_wait(cls.lock_wait, "lock_wait")
    except ConfigurationError as exc:
        raise ConfigurationError(f"{exc} (task {task!r})") from None
    if cls.lock_on_busy not in BUSY_ACTIONS:
        raise bad("lock_on_busy", cls.lock_on_busy, "'skip', 'retry' or 'raise'")
    if not isinstance(cls.lock_release_on_worker_lost, bool):
        raise bad("lock_release_on_worker_lost", cls.lock_release_on_worker_lost, "True or False")
    if cls.lock_limit is not None:
        try:
            check_limit(cls.lock_limit)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{exc} (task option lock_limit, task {task!r})") from None
    check_scope_options(cls, bad)
    if cls.lock_limit is not None and (cls.lock_scope == "queue" or cls.lock_hold_after):
        raise bad(
            "lock_limit",
            cls.lock_limit,
            "None when lock_scope='queue' or lock_hold_after is set (a queued task and a "
            "throttle hold one lock; lock_limit lets N runs overlap in lock_scope='run')",
        )


class _Run:
    """The ``origin`` of a task run's mutex: which task and run ``_Signals`` reports."""

    __slots__ = ("task", "task_id")

    def __init__(self, task: SingletonTask, task_id: str) -> None:
        self.task = task
        self.task_id = task_id


class _Signals(hooks.Listener):
    """Sends ``lock_lost`` for the locks of task runs, from the core's ``lost`` event.

    ``lock_busy`` is sent by ``SingletonTask._on_busy`` instead: a run is busy only after
    the task has looked at the holder (and maybe waited for an earlier attempt of itself),
    which no single lock event knows, and the signal carries that holder and the action.
    """

    def lost(self, event: hooks.LostEvent) -> None:
        run = event.mutex.origin
        if isinstance(run, _Run):
            lock_lost.send(sender=run.task, task_id=run.task_id, lock_name=event.name)


hooks.add_listener(_Signals())


def _holder_task(holder: str | None) -> tuple[str | None, int | None]:
    """Split a lock value into (task id, attempt); (None, None) when it is not ours."""
    if holder is None:
        return None, None
    task_id, _, rest = holder.partition(":")
    attempt, _, _ = rest.partition(":")
    return task_id, int(attempt) if attempt.isdigit() else None


class SingletonRequest(Request):  # type: ignore[misc]
    """The worker-side request of a ``SingletonTask``: runs in the worker's parent process.

    When a pool child dies under a task (SIGKILL, OOM kill, segfault, hard time limit,
    ``revoke(terminate=True)``), the child cannot release its lock; the parent releases it
    once the child process is gone, so the next run need not wait ``lock_expiry``. It deletes
    only a value written by this very attempt of this task (see ``release_dead_holder``).
    A custom ``Request`` class for a singleton task must subclass this one.
    """

    def on_timeout(self, soft: bool, timeout: float) -> None:
        super().on_timeout(soft, timeout)
        if not soft:
            self._release_after_exit()

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):
            exc = exc.exc
        if isinstance(exc, (WorkerLostError, Terminated, SystemExit, KeyboardInterrupt)):
            # Before the message is requeued (reject_on_worker_lost), so the new run finds it free.
            self._release_after_exit()
        return super().on_failure(exc_info, send_failed_event, return_ok)

    def _release_after_exit(self) -> None:
        task = self.task
        if not isinstance(task, SingletonTask) or not task.lock_release_on_worker_lost:
            return
        attempt = self.request_dict.get("retries") or 0
        release = functools.partial(
            release_dead_holder, task, self.id, attempt, self.args, self.kwargs
        )
        _after_process_exit(self.worker_pid, release, task.lock_expiry_for())


def _after_process_exit(pid: int | None, callback: Callable[[], object], limit: float) -> None:
    """Call ``callback`` once process ``pid`` has exited: now if it has, else from a thread
    that gives up after ``limit`` seconds (the lock has expired by then, or is still in use).

    Never releases while the child may still run: a hard time limit is reported before the
    child is killed. Without ``os.pidfd_open`` (not Linux) the lock is left to expire.
    """
    if pid is None:
        return
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        callback()
        return
    except (AttributeError, OSError):
        return
    ready, _, _ = select.select([fd], [], [], 0)
    if ready:
        os.close(fd)
        callback()
        return

    def wait() -> None:
        try:
            exited, _, _ = select.select([fd], [], [], limit)
        finally:
            os.close(fd)
        if exited:
            callback()

    threading.Thread(target=wait, name=f"redsync-release-{pid}", daemon=True).start()


def release_dead_holder(
    task: SingletonTask,
    task_id: str,
    attempt: int,
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
) -> bool:
    """Release the lock of ``task`` run ``task_id`` (attempt ``attempt``) whose process died.

    Reads the holder (``Redsync.inspect``) and deletes it only if it was written by that very
    attempt; a lock taken since by another run, or by a retry of the same task, is left alone.
    Returns True if the lock was released.
    """
    try:
        name = task.lock_name_for(args, kwargs)
    except (ConfigurationError, TypeError):
        return False  # the run failed before locking, for the same reason
    redsync = get_redsync(task.app)
    holder = redsync.inspect(name).holder
    if holder is None or not holder.startswith(f"{task_id}:{attempt}:"):
        return False
    released = redsync.new_mutex(name, value=holder).unlock()
    if released:
        logger.warning(
            "Released lock %r of task %s[%s]: its worker process ended during the run.",
            name,
            task.name,
            task_id,
        )
    return released


class SingletonTask(celery.Task):  # type: ignore[misc]
    """A task base class: runs with the same lock name never overlap, on any pool and worker.

    Options (``@app.task(base=SingletonTask, lock_...=...)`` keywords or class attributes):

    - ``lock_name``: None (task name + a digest of all bound arguments, so ``f(1, 2)`` and
      ``f(1, b=2)`` share a lock), a template (``"sync:{account_id}"``), a list of argument
      names (task name + a digest of those; ``[]`` is the task name alone), or a callable
      taking the task's arguments and returning the name.
    - ``lock_expiry``: seconds (default: the app's ``redsync_options`` expiry, 30). The lock is
      auto-extended while the body runs; this is how soon a dead worker's lock frees itself.
    - ``lock_wait``: seconds to keep trying when the lock is held (default 0: one attempt).
    - ``lock_on_busy``: ``"skip"`` (default: WARNING log, body not run, nothing stored),
      ``"retry"`` (``self.retry`` after the holder's remaining TTL plus jitter) or ``"raise"``
      (``LockTaken``: task FAILURE).
    - ``lock_release_on_worker_lost``: release a dead child's lock from the parent (True).
    - ``lock_limit``: None (one run at a time), or let up to N runs overlap (a semaphore).
    - ``lock_scope``: ``"run"`` (default: locked while the body runs) or ``"queue"`` (locked
      from ``apply_async`` on; see ``redsync_celery.queue``), with ``lock_on_duplicate``
      (``"return"``: the holder's ``AsyncResult``, or ``"raise"``: ``DuplicateTask``) and
      ``lock_queue_expiry`` (3600 s, plus any countdown/eta).
    - ``lock_hold_after``: seconds the lock is kept (not extended) after a successful run, so
      the task runs at most once per window (default 0: released at once).

    While the body runs, ``self.request.lock`` is the core ``Mutex`` (check ``.remaining``
    before side effects) and ``self.request.lock_lost`` turns True if the lock could not be
    kept. Direct calls (``my_task(1, 2)``) run the function without a lock.
    """

    Request = SingletonRequest
    lock_name: str | Sequence[str] | Callable[..., str] | None = None
    lock_expiry: float | None = None
    lock_wait: float = 0.0
    lock_on_busy: str = "skip"
    lock_release_on_worker_lost: bool = True
    lock_limit: int | None = None
    lock_scope: str = "run"
    lock_on_duplicate: str = "return"
    lock_queue_expiry: float = 3600.0
    lock_hold_after: float = 0.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_options(cls)

    def lock_name_for(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
        """Return the lock name of a run of this task with ``args`` and ``kwargs``.

        Raises:
            ConfigurationError: the template or argument list does not fit the task.
            TypeError: the arguments do not fit the task's signature.
        """
        spec = _static(self, "lock_name")
        if spec is None:
            return f"{self.name}:{arguments_digest(self.run, args, kwargs)}"
        if isinstance(spec, str) or callable(spec):
            return render_lock_name(spec, self.run, args, kwargs)
        if not spec:
            return str(self.name)
        return f"{self.name}:{arguments_digest(self.run, args, kwargs, list(spec))}"

    def apply_async(
        self,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Send the task; with ``lock_scope="queue"``, lock first (see ``redsync_celery.queue``).

        A retry's own message (``self.retry()``) is sent without locking: its attempt keeps
        the lock for it.

        Raises:
            DuplicateTask: queue scope, the lock is held, ``lock_on_duplicate="raise"``.
            QuorumUnreachable: queue scope, too few lock nodes answer (nothing is sent).
        """
        if self.lock_scope != "queue" or options.get("retries"):
            return super().apply_async(args, kwargs, task_id=task_id, **options)
        return enqueue(self, super().apply_async, args, kwargs, task_id or uuid(), options)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.called_directly:
            return super().__call__(*args, **kwargs)
        name = self.lock_name_for(args, kwargs)
        mutex = None
        if self.lock_scope == "queue":
            mutex = take_over_queued(self, name, request)
        if mutex is None:
            mutex = self._acquire(name, request).mutex
        request.lock = mutex
        request.lock_lost = False
        try:
            # The tracer has pushed the request already (as the worker's own fast path does).
            result = self.run(*args, **kwargs)
        except BaseException as exc:
            finish_run(self, mutex, exc)
            raise
        finish_run(self, mutex, None)
        return result

    def _acquire(self, name: str, request: Any) -> Hold:
        """Take the lock for this run, or end the run as ``lock_on_busy`` says.

        Raises:
            celery.exceptions.Ignore: busy, ``"skip"``.
            celery.exceptions.Retry: busy, ``"retry"``.
            LockTaken: busy, ``"raise"`` (or ``"retry"`` after ``max_retries``).
            QuorumUnreachable: too few nodes answer; the task fails (lock state unknown).
        """
        held = self._hold(name, request, self.lock_wait)
        if held.acquire():
            return held
        redsync = get_redsync(self.app)
        holder_id, holder_attempt = _holder_task(redsync.inspect(name).holder)
        if holder_id == request.id and (holder_attempt or 0) < (request.retries or 0):
            # An earlier attempt of this task published this retry and is releasing the lock.
            held = self._hold(name, request, self.lock_expiry_for())
            if held.acquire():
                return held
            holder_id, _ = _holder_task(redsync.inspect(name).holder)
        assert held.busy is not None  # set by a failed acquire()
        self._on_busy(name, holder_id, held.busy, request)

    def lock_expiry_for(self) -> float:
        """Return this task's lock expiry in seconds (``lock_expiry`` or the app default)."""
        if self.lock_expiry is not None:
            return float(self.lock_expiry)
        return float(get_settings(self.app).options["expiry"])

    def run_mutex(self, name: str, request: Any) -> Mutex:
        """Return the (unlocked) mutex of this run: value ``"<task id>:<attempt>:<token>"``,
        auto-extended, reporting a loss to the task and the ``lock_lost`` signal."""
        return self._hold(name, request, 0.0).mutex

    def _hold(self, name: str, request: Any, wait: float) -> Hold:
        task_id, attempt = request.id, request.retries or 0

        def on_lost(mutex: object) -> None:
            request.lock_lost = True
            logger.error(
                "Task %s[%s] lost its lock %r while running: another run may start now. "
                "self.request.lock_lost is set; check it before side effects.",
                self.name,
                task_id,
                name,
            )

        options: dict[str, Any] = {
            "gen_value_func": lambda: f"{task_id}:{attempt}:{secrets.token_urlsafe(12)}",
            "on_lost": on_lost,
        }
        if self.lock_expiry is not None:
            options["expiry"] = float(self.lock_expiry)
        held = get_redsync(self.app).hold(name, wait=wait, limit=self.lock_limit, **options)
        held.mutex.origin = _Run(self, task_id)
        return held

    def _on_busy(
        self, name: str, holder: str | None, exc: LockNotAcquired, request: Any
    ) -> NoReturn:
        action = self.lock_on_busy
        lock_busy.send(
            sender=self,
            task_id=request.id,
            lock_name=name,
            holder=holder,
            retry_after=exc.retry_after,
            action=action,
        )
        when = f" ({free_in(exc.retry_after)})"
        held_by = f"task {holder}" if holder else "another holder"
        if action == "skip":
            logger.warning(
                "Skipped task %s[%s]: lock %r is held by %s%s (lock_on_busy='skip').",
                self.name,
                request.id,
                name,
                held_by,
                when,
            )
            raise Ignore()
        taken = LockTaken(
            name,
            f"Task {self.name}[{request.id}] did not run: lock {name!r} is held by {held_by}"
            f"{when}. Another run with the same lock name is in progress; use "
            "lock_on_busy='retry' or lock_wait= to run it later.",
            exc.attempts,
            exc.retry_after,
            getattr(exc, "nodes", ()),
        )
        if action == "retry":
            delay = exc.retry_after if exc.retry_after is not None else self.lock_expiry_for()
            raise self.retry(countdown=delay + random.uniform(*RETRY_JITTER), exc=taken)
        raise taken
