"""Database URLs: which kind of database ``--db`` names, and how to print one safely.

**Secrets.** A PostgreSQL password may come in the URL, from ``$PGPASSWORD``
or from a ``.pgpass`` file (libpq reads both; the last two keep it out of
``ps`` output too). Whatever prints a URL prints :func:`redact` of it, and
driver errors pass through :func:`scrub`, so the password shows up in no
log, error or health answer. No psycopg here: this module is imported
whatever the database.
"""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

SCHEMES = ("postgresql://", "postgres://")


def is_url(target: str) -> bool:
    """Whether ``--db`` names a PostgreSQL database (else it is a SQLite file)."""
    return target.startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``: the form that may be printed."""
    if not is_url(url):
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def password_of(url: str) -> str | None:
    """The password written in the URL (userinfo or ``?password=``), if any."""
    if not is_url(url):
        return None
    parts = urlsplit(url)
    for key, value in parse_qsl(parts.query):
        if key == "password" and value:
            return value
    return unquote(parts.password) if parts.password else None


def scrub(text: str, url: str) -> str:
    """``text`` (an error message) with the URL's password, raw or quoted, masked."""
    password = password_of(url)
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)


def warn_if_password_in_argv(target: str) -> None:
    """A password on the command line is visible in ``ps``: say where to put it instead."""
    if password_of(target) and target in sys.argv:
        logging.getLogger("inkwire").warning(
            "the password in %s is visible to every user of this machine (ps);"
            " put it in $PGPASSWORD or ~/.pgpass instead",
            redact(target),
        )
