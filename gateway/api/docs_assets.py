"""The docs page's assets, served by the gateway itself, so ``/docs`` works with no internet.

Swagger UI's scripts, styles and images come from the ``swagger-ui-bundle`` package (installed
with the gateway) and are served under :data:`ASSETS_PATH`; flask-smorest's ``/docs`` page names
only those (``OPENAPI_SWAGGER_UI_URL``) and the gateway's own ``/openapi.json``. The route is a
plain Flask blueprint, not part of the API, so it is not in the OpenAPI document. Like
``/docs`` it needs no key.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, abort, send_from_directory
from flask.typing import ResponseReturnValue

#: Where the assets are served; ends with a slash (flask-smorest appends file names).
ASSETS_PATH = "/docs/assets/"
#: The only kinds of file served from the bundle (not its own index pages or templates).
SERVED_SUFFIXES = frozenset({".js", ".css", ".png", ".map"})
#: A day: the files change only with the installed package.
MAX_AGE_SECONDS = 86_400

blp = Blueprint("docs_assets", __name__)


def bundle_folder() -> Path:
    """The installed Swagger UI's folder."""
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@blp.get(f"{ASSETS_PATH}<path:filename>")
def asset(filename: str) -> ResponseReturnValue:
    """One file of the bundle; anything else (another kind, a sub-folder, ``..``) is a 404."""
    if "/" in filename or Path(filename).suffix not in SERVED_SUFFIXES:
        abort(404)
    return send_from_directory(bundle_folder(), filename, max_age=MAX_AGE_SECONDS)


def install(app: Flask) -> None:
    """Serve the assets and point flask-smorest's ``/docs`` page at them (call before the
    flask-smorest ``Api`` is made). The validator badge is off: it would send the document to
    validator.swagger.io."""
    app.config["OPENAPI_SWAGGER_UI_URL"] = ASSETS_PATH
    app.config.setdefault("OPENAPI_SWAGGER_UI_CONFIG", {"validatorUrl": None})
    app.register_blueprint(blp)
