"""The entry point: ``app`` for WSGI servers (``gunicorn app:app``), and the commands
(``python app.py --help``)."""

import sys

from gateway.cli import main


def __getattr__(name: str):  # the WSGI app is built on first access, not on import
    if name == "app":
        from gateway import create_app

        value = create_app()
        globals()["app"] = value
        return value
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
