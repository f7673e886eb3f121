"""``python -m duoli.api [--host H] [--port P]``: run the API service."""

from __future__ import annotations

import argparse

from duoli.api.app import serve
from duoli.settings import load_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m duoli.api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    serve(load_settings(), args.host, args.port)


if __name__ == "__main__":
    main()
