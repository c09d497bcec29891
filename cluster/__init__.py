"""Scale-out: several inkwire nodes sharing rooms, presence and relay channels through Redis.

Without ``--redis`` none of this is imported and a node is what it always
was. With it, every node keeps one :class:`~cluster.link.RedisLink` (commands,
one pub/sub connection, health, a heartbeat), which the rooms
(:mod:`cluster.rooms`) and the relays build on. docs/cluster.md says how it
works and what each fault does.
"""

import argparse

REDIS_ENV = "INKWIRE_REDIS_URL"  # the Redis of `inkwire serve` and `inkwire relay` nodes


def add_redis_option(parser: argparse.ArgumentParser, shared: str) -> None:
    """``--redis URL`` (else ``$INKWIRE_REDIS_URL``, else the file's) on a command that can
    run as a node.

    ``shared``: what the nodes share through it, for the help text.
    """
    parser.add_argument(
        "--redis",
        default=None,  # $INKWIRE_REDIS_URL is read with the other settings (service.sources)
        metavar="URL",
        help=f"run as one node of a cluster sharing {shared} through this Redis "
        f"(redis://HOST:PORT/DB, or ${REDIS_ENV}); default: one node, no Redis",
    )
