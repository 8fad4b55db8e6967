"""Bringing history recorded by other tools into a workspace (`workbench import ...`).

Importers read another tool's store through that tool's own client and write what they find the
way Workbench records it itself: runs as event files that the catalog indexes (`workbench.runs`),
models through the registry (`workbench.models.registry`). Nothing here writes catalog rows of
its own, so an imported run or model is indistinguishable in shape from a native one.
"""
