"""The WebSocket/ASGI plumbing both servers stand on: the collab server and the relays.

ASGI types and HTTP replies (:mod:`net.asgi`), framing and writing to
sockets (:mod:`net.wire`), the shared fan-out log (:mod:`net.fanout`), the
connection skeleton that drains it (:mod:`net.connection`), hosting under
hypercorn (:mod:`net.hosting`), bearer tokens (:mod:`net.tokens`), rate
limits (:mod:`net.limits`) and metrics export (:mod:`net.metrics`).

The rule: nothing here imports anything else of inkwire (``collab``,
``relays``, ``storage``, ``clients``). The layer knows frames, logs and
tokens, not rooms, catalogs or channels' meaning, so either server can
change without touching the other; ``tests/test_layers.py`` holds it to that.
"""
