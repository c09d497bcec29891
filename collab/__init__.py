"""The collab server: Excalidraw diagrams as Yjs documents, synced through rooms.

Where things happen (docs/architecture.md tells the whole journey):

- an update is *applied* in :mod:`collab.room` (the room is the small core);
- it is made *durable* by :mod:`collab.persistence` (through a :mod:`storage` store);
- it is *fanned out* through the room's :mod:`net.fanout` log, rendered by
  :mod:`collab.frames`, written by each client's :mod:`collab.connection`;
- *diagram events* for JSON consumers come from :mod:`collab.diagram_events`,
  a room extension (:mod:`collab.hooks`).
"""
