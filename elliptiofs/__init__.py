"""elliptiofs: the ElliptIO lake as a FUSE filesystem (pyfuse3 + trio).

Layers point one way: :mod:`.cli` (options; :mod:`.start`, :mod:`.serve`,
:mod:`.daemon`, :mod:`.kernel`) -> :mod:`.ops` (pyfuse3, the errno table) ->
:mod:`.readonly`, :mod:`.attrs`, :mod:`.dirs`, :mod:`.handles`, :mod:`.seam` -> :mod:`.tree`
(:mod:`.views`, :mod:`.nodes`, :mod:`.inodes`), :mod:`.reader`, :mod:`.scan`,
:mod:`.readlog`, :mod:`.outbox` (plain Python + trio) -> :mod:`.workers`,
:mod:`.procinfo`, :mod:`.settings` -> :mod:`elliptio`. The ``elliptiofs`` command is
:mod:`.cli`.
"""
