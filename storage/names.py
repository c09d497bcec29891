"""What a diagram may be called: one rule for every way in.

A diagram's name is its id everywhere: the Yjs route ``/yjs/{name}``, the
REST API, the CLI, the ``diagram:{name}`` relay channel and the web app's
``/d/{name}`` page. Keeping it to a URL- and filename-safe alphabet means it
never needs escaping in any of them. (The web app checks the same pattern in
``clients/web/src/api.js``; a test keeps the two equal.)
"""

from __future__ import annotations

import re

DIAGRAM_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")
DIAGRAM_NAME_RULE = "1-128 characters of [A-Za-z0-9._-]"  # for error messages
NAME_PREFIX = re.compile(r"[A-Za-z0-9._-]{0,128}")  # a start of a name (listing by prefix)
