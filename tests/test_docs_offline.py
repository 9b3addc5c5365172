"""``/docs`` works with no internet: the page and everything it names come from the gateway.

The app is served on 127.0.0.1 by a server thread; the page is fetched over HTTP without a key,
every script, style sheet and image it names is fetched from the same server, and so are the
files those name in turn (CSS ``url(...)`` that are not ``data:`` URIs, source maps) and the
OpenAPI document the page loads. None may be on another host.
"""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from gateway import create_app


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:
        pass


class AssetNames(HTMLParser):
    """The URLs a page's tags name (``src`` and ``href``), and its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.scripts.append(data)


@pytest.fixture(scope="module")
def served(runtime):
    server = make_server("127.0.0.1", 0, create_app(runtime=runtime),
                         request_handler=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="docs-gateway", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)


def _named_by(text: str, kind: str) -> list[str]:
    """What a script or style sheet names in turn: CSS ``url(...)`` (not ``data:``) and its
    source map."""
    names = re.findall(r"sourceMappingURL=([^\s*]+)", text)
    if kind == "css":
        names += [u.strip("'\"") for u in re.findall(r"url\(([^)]*)\)", text)]
    return [n for n in names if not n.strip("'\"").startswith("data:")]


def test_docs_and_every_asset_it_names_come_from_the_gateway(served):
    page = requests.get(f"{served}/docs", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    names = AssetNames()
    names.feed(page.text)
    spec_urls = [m for s in names.scripts for m in re.findall(r'url:\s*"([^"]+)"', s)]
    assert spec_urls == ["/openapi.json"]
    assert "validatorUrl" in page.text and "validator.swagger.io" not in page.text
    kinds = {u.rsplit(".", 1)[-1] for u in names.urls}
    assert {"js", "css"} <= kinds, names.urls

    fetched: dict[str, requests.Response] = {}
    queue = [urljoin(f"{served}/docs", u) for u in names.urls + spec_urls]
    while queue:
        url = queue.pop()
        if url in fetched:
            continue
        parts = urlsplit(url)
        assert f"{parts.scheme}://{parts.netloc}" == served, f"{url} is not on the gateway"
        answer = requests.get(url, timeout=10)  # no key: the docs page is public
        assert answer.status_code == 200, (url, answer.status_code)
        fetched[url] = answer
        kind = parts.path.rsplit(".", 1)[-1]
        if kind in ("js", "css"):
            queue += [urljoin(url, n) for n in _named_by(answer.text, kind)]

    by_path = {urlsplit(u).path: r for u, r in fetched.items()}
    assert by_path["/openapi.json"].json()["info"]["title"] == "Retention gateway"
    for path, answer in by_path.items():
        if path.endswith(".js"):
            assert "javascript" in answer.headers["Content-Type"], path
        if path.endswith(".css"):
            assert answer.headers["Content-Type"].startswith("text/css"), path
    assert any(p.endswith(".map") for p in by_path), "the source maps are served too"


@pytest.mark.parametrize("path", ["index.html", "index.j2", "..%2Fswagger_ui_bundle.py",
                                  "nope.js", "vendor/swagger-ui.css"])
def test_only_the_bundles_own_assets_are_served(client, path):
    answer = client.get(f"/docs/assets/{path}")
    assert answer.status_code == 404
    assert answer.is_json and answer.get_json()["error"]


def test_the_assets_are_not_in_the_openapi_document(client):
    paths = client.get("/openapi.json").get_json()["paths"]
    assert not [p for p in paths if p.startswith("/docs")]
