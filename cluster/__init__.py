"""Scale-out: several inkwire nodes sharing rooms, presence and relay channels through Redis.

Without ``--redis`` none of this is imported and a node is what it always
was. With it, every node keeps one :class:`~cluster.link.RedisLink` (commands,
one pub/sub connection, health, a heartbeat), which the rooms
(:mod:`cluster.rooms`) and the relays build on. docs/cluster.md says how it
works and what each fault does.
"""

REDIS_ENV = "INKWIRE_REDIS_URL"  # the Redis of `inkwire serve` and `inkwire relay` nodes
