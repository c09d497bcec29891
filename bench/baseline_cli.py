"""The command line every baseline server takes: `--host`, `--port`, then serve forever.

Kept apart from bench/common.py on purpose: a baseline server process imports only
this (argparse, asyncio), so its memory, which the benchmarks measure, is the server's.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any


def main(doc: str, run: Callable[[str, int], Coroutine[Any, Any, None]]) -> None:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(run(args.host, args.port))
