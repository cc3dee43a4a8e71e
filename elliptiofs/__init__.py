"""elliptiofs: the ElliptIO lake as a FUSE filesystem (pyfuse3 + trio).

Layers point one way: :mod:`.ops` (pyfuse3) -> :mod:`.tree`, :mod:`.reader`,
:mod:`.readlog` (plain Python + trio) -> :mod:`elliptio`. The ``elliptiofs`` command is
:mod:`.cli`.
"""
