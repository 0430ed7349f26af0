"""Every database call runs in a thread worker with its own connection; results come back as messages.

`DataScreen.fetch(group, job)` runs `job(database)` in a thread inside `source.session()`
(its own connection, closed at the end), then posts `Fetched(group, token, result)` to the
screen, which calls `self.show_<group>(result)` on the UI thread. A newer request in the
same group makes older answers stale: they are dropped by token, so a slow page never
overwrites a fresh one. Database failures also go to the app (banner + health check).

Every call is counted in `app.db_calls` while it waits, so the banner can say "waiting for
the database (N s)" when a server accepts connections and never answers. Worker threads are
daemons the app never joins (`DaemonThreads`): quitting does not wait for a stuck one.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import threading
import time
from typing import Any, Callable

from textual.screen import Screen

from ..errors import DatabaseError, ToolkitError
from .messages import DatabaseFailed, DatabaseOk, Fetched, FetchFailed


class DataScreen(Screen):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._tokens: dict[str, int] = {}

    def fetch(self, group: str, job: Callable[[Any], Any]) -> None:
        token = self._tokens.get(group, 0) + 1
        self._tokens[group] = token
        source = self.app.source
        app = self.app

        def run() -> None:
            try:
                with app.db_calls.waiting(), source.session() as database:
                    result = job(database)
            except DatabaseError as exc:
                app.post_message(DatabaseFailed(exc.one_line()))
                self.post_message(FetchFailed(group, token, exc.one_line(), database=True))
                return
            except ToolkitError as exc:
                self.post_message(FetchFailed(group, token, exc.one_line(), database=False))
                return
            except Exception as exc:  # a bug: say so on screen instead of killing the app
                self.post_message(FetchFailed(group, token, f"unexpected {type(exc).__name__}: {exc}", database=False))
                return
            app.post_message(DatabaseOk())
            self.post_message(Fetched(group, token, result))

        self.run_worker(run, thread=True, group=group, name=group, exit_on_error=False)

    def on_fetched(self, message: Fetched) -> None:
        message.stop()
        if message.token != self._tokens.get(message.group):
            return  # superseded by a newer request
        getattr(self, f"show_{message.group}")(message.result)

    def on_fetch_failed(self, message: FetchFailed) -> None:
        message.stop()
        if message.token != self._tokens.get(message.group):
            return
        handler = getattr(self, f"failed_{message.group}", None)
        if handler is not None:
            handler(message.message)
        elif not message.database:  # the banner already says the database is gone
            self.notify(message.message, title="Could not load", severity="error", markup=False)

    def reload(self) -> None:
        """Fetch again what the screen shows (after the database returns, or ctrl+r)."""


class InFlight:
    """Database calls under way, from any thread: how long the oldest has been waiting."""

    def __init__(self):
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}
        self._ids = itertools.count()

    def begin(self) -> int:
        with self._lock:
            token = next(self._ids)
            self._started[token] = time.monotonic()
        return token

    def end(self, token: int) -> None:
        with self._lock:
            self._started.pop(token, None)

    @contextlib.contextmanager
    def waiting(self):
        """Around one call."""
        token = self.begin()
        try:
            yield
        finally:
            self.end(token)

    def oldest_seconds(self) -> float | None:
        with self._lock:
            first = min(self._started.values(), default=None)
        return None if first is None else time.monotonic() - first

    def __len__(self) -> int:
        with self._lock:
            return len(self._started)


class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
    """The event loop's executor (Textual runs thread workers there): one daemon thread per
    call, and a shutdown that joins nothing. The stock executor's threads are joined when the
    loop closes and again at interpreter exit, so one worker stuck on a silent server would
    hold `q` for as long as the server stays silent."""

    def submit(self, fn, /, *args, **kwargs):
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run():
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the awaiting worker, as the stock executor does
                future.set_exception(exc)
            else:
                future.set_result(result)

        threading.Thread(target=run, name="dashboard-db", daemon=True).start()
        return future

    def shutdown(self, wait=True, *, cancel_futures=False):
        return None
