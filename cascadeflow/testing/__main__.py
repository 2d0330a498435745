"""`python -m cascadeflow.testing [--port N]`: the built-in provider as a process of its own.

It prints its base URL on the first line and serves until stdin closes or it is interrupted,
so another program (a benchmark of a different runtime, a client in another language) can
call it over loopback.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

from cascadeflow.testing.server import ProviderServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cascadeflow.testing", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    with ProviderServer(host=args.host, port=args.port) as server:
        print(server.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.read()  # until the parent closes our stdin
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
