"""Running inkwire as a service: one settings file, ``inkwire up``, process-manager units.

- :mod:`service.settings`: the settings model (pydantic), one class per section of
  ``inkwire.yaml``; every key, its default and what it drives;
- :mod:`service.sources`: where values come from (flags > environment > file >
  defaults), with the file's line numbers, and the checks across keys;
- :mod:`service.build`: settings into the servers' own objects (``Config``,
  ``RelaySettings``, stores, TLS);
- :mod:`service.up` and :mod:`service.worker`: ``inkwire up``, a supervisor and its workers;
- :mod:`service.logs`: one log format for every process (text or JSON);
- :mod:`service.units`: ``inkwire deploy systemd|supervisor``;
- :mod:`service.cli`: the ``config``, ``up`` and ``deploy`` commands.

docs/configuration.md and docs/service.md say how to use them.
"""

CONFIG_ENV = "INKWIRE_CONFIG"  # the settings file when --config is not given
