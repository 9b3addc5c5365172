"""Paginators: small state machines that say where the first page is and where the next one is,
and refuse to walk in circles; :func:`paginate` walks one with an :class:`~.client.HttpClient`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Protocol
from urllib.parse import urljoin

from .auth import is_absolute
from .client import HttpClient
from .errors import PaginationLoop
from .retry import Deadline


class Paginator(Protocol):
    """A small state machine: where the first page is, and where the next one is, if any."""

    def first(self) -> tuple[str, dict]: ...

    def advance(self, response_json: Any) -> tuple[str, dict] | None: ...


class LoopDetector:
    """Brent's cycle detection over the sequence of next-page links, in constant memory.

    Remembers one checkpoint link; the checkpoint moves to the current link whenever the number
    of steps since it reaches a power of two. A cursor sequence that cycles meets its checkpoint
    within about twice the cycle's length plus its lead-in, however long the walk.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._checkpoint: str | None = None
        self._power = 1
        self._steps = 0

    def seen_again(self, link: str) -> bool:
        """True when ``link`` equals the checkpoint (a cycle); otherwise record the step."""
        if link == self._checkpoint:
            return True
        self._steps += 1
        if self._steps == self._power:
            self._checkpoint, self._power, self._steps = link, self._power * 2, 0
        return False


class JsonApiCursorPaginator:
    """JSON:API cursor pagination: follow ``links.next`` until it is absent or null.

    The cursor is opaque; a cycle of ``next`` links raises :class:`PaginationLoop`. A ``next``
    on another origin is refused by the client (:class:`~.errors.ForeignOrigin`) before it
    sends anything.
    """

    def __init__(self, service: str, path: str, params: dict | None = None) -> None:
        self.service = service
        self.path = path
        self.params = dict(params or {})
        self._loops = LoopDetector()
        self.pages = 0

    def first(self) -> tuple[str, dict]:
        self._loops.reset()
        self.pages = 0
        return self.path, dict(self.params)

    def advance(self, response_json: Any) -> tuple[str, dict] | None:
        self.pages += 1
        links = response_json.get("links") if isinstance(response_json, dict) else None
        next_link = links.get("next") if isinstance(links, dict) else None
        if isinstance(next_link, dict):  # JSON:API link objects: {"href": ...}
            next_link = next_link.get("href")
        if not next_link:
            return None
        if self._loops.seen_again(next_link):
            raise PaginationLoop(self.service, f"links.next repeats after {self.pages} pages")
        return next_link, {}


class PageNumberPaginator:
    """``?page=N`` pages of ``{count, next, previous, results}`` (Rejoiner).

    Stops when ``next`` is null; raises :class:`PaginationLoop` when the ``next`` links cycle
    or an empty page still claims a next one.
    """

    def __init__(self, service: str, path: str, params: dict | None = None, *,
                 param: str = "page", start: int = 1) -> None:
        self.service = service
        self.path = path
        self.params = dict(params or {})
        self.param = param
        self.start = start
        self.page = start
        self._loops = LoopDetector()

    def first(self) -> tuple[str, dict]:
        self.page = self.start
        self._loops.reset()
        return self.path, {**self.params, self.param: self.page}

    def advance(self, response_json: Any) -> tuple[str, dict] | None:
        if not isinstance(response_json, dict) or not response_json.get("next"):
            return None
        next_link = str(response_json["next"])
        if self._loops.seen_again(next_link):
            raise PaginationLoop(self.service, f"next repeats after page {self.page}")
        if not response_json.get("results"):
            raise PaginationLoop(self.service, f"empty page {self.page} claims a next page")
        self.page += 1
        return self.path, {**self.params, self.param: self.page}


def paginate(http: HttpClient, paginator: Paginator, items: Callable[[Any], Iterable], *,
             deadline: Deadline | float | None = None) -> Iterator:
    """Yield ``items(page_json)`` of every page in turn, holding one page at a time.

    A relative next link is resolved against the URL of the page that named it. ``deadline``
    bounds every page's request (as in :meth:`HttpClient.request`; a :meth:`HttpClient.deadline`
    scope around the iteration does the same).
    """
    step = paginator.first()
    while step is not None:
        target, params = step
        response = http.request("GET", target, params=params or None, deadline=deadline)
        page = response.json()
        page_url = response.url
        response.close()
        yield from items(page)
        step = paginator.advance(page)
        del page
        if step is not None and not is_absolute(step[0]) \
                and step[0].startswith(("?", "/")) and step[0] != target:
            step = (urljoin(page_url, step[0]), step[1])
