"""Drive a Fitting with the adapter's summarizer, in sync or async code, under a timeout.

The summarizer is whatever the adapter supplies: `summarizer(job) -> str`, or an `async def`
returning str. A call that outlives its timeout is abandoned, never waited for: sync callables
run on a daemon thread so a hung one cannot block the caller or interpreter exit.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tierwise.summarize.fitter import Fitted, Fitting
from tierwise.summarize.prompt import SummaryJob

Summarizer = Callable[[SummaryJob], "str | Awaitable[str]"]
NO_SUMMARIZER = "no summarizer configured"


class SummarizerTimeout(TimeoutError):
    pass


def fit_sync(fitting: Fitting, summarizer: Summarizer | None, timeout_s: float) -> Fitted:
    """Run the fitting's summarizer calls one after another and return the fitted messages."""
    while (job := fitting.next_job()) is not None:
        if summarizer is None:
            fitting.fail(NO_SUMMARIZER, called=False)
            break
        started = time.perf_counter()
        try:
            answer = call_with_timeout(summarizer, job, timeout_s)
        except Exception as exc:
            fitting.fail(_why(exc, timeout_s), _ms(started))
        else:
            fitting.feed(answer, _ms(started))
    return fitting.result()


async def fit_async(fitting: Fitting, summarizer: Summarizer | None, timeout_s: float) -> Fitted:
    """As fit_sync, without blocking the event loop (sync summarizers run on a thread)."""
    while (job := fitting.next_job()) is not None:
        if summarizer is None:
            fitting.fail(NO_SUMMARIZER, called=False)
            break
        started = time.perf_counter()
        try:
            answer = await acall_with_timeout(summarizer, job, timeout_s)
        except Exception as exc:
            fitting.fail(_why(exc, timeout_s), _ms(started))
        else:
            fitting.feed(answer, _ms(started))
    return fitting.result()


def call_with_timeout(summarizer: Summarizer, job: SummaryJob, timeout_s: float) -> Any:
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["value"] = _resolve(summarizer(job))
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=target, name="tierwise-summarizer", daemon=True).start()
    if not done.wait(timeout_s):
        raise SummarizerTimeout()
    if "error" in box:
        raise box["error"]
    return box["value"]


async def acall_with_timeout(summarizer: Summarizer, job: SummaryJob, timeout_s: float) -> Any:
    if _is_async(summarizer):
        try:
            return await asyncio.wait_for(summarizer(job), timeout_s)  # type: ignore[arg-type]
        except TimeoutError:
            raise SummarizerTimeout() from None
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # the caller gave up waiting
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def target() -> None:
        try:
            value = _resolve(summarizer(job))
        except BaseException as exc:
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, value, None)

    threading.Thread(target=target, name="tierwise-summarizer", daemon=True).start()
    try:
        return await asyncio.wait_for(future, timeout_s)
    except TimeoutError:
        raise SummarizerTimeout() from None


def _is_async(summarizer: Summarizer) -> bool:
    return inspect.iscoroutinefunction(summarizer) or inspect.iscoroutinefunction(
        getattr(summarizer, "__call__", None)  # noqa: B004 - an object with async __call__
    )


def _resolve(value: Any) -> Any:
    """A sync callable that returned an awaitable (e.g. a partial of an async def)."""
    if inspect.isawaitable(value):

        async def wait() -> Any:
            return await value

        return asyncio.run(wait())
    return value


def _why(exc: BaseException, timeout_s: float) -> str:
    if isinstance(exc, SummarizerTimeout):
        return f"summarizer timed out after {timeout_s:g}s"
    detail = str(exc) or type(exc).__name__
    return f"summarizer failed: {type(exc).__name__}: {detail}"[:240]


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
