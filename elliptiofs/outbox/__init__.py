"""The outbox: files and directories written into ``outbox/`` are staged on local disk and
committed as one artifact each, through the library's one save path
(:meth:`elliptio.Lake.save_entries`). A directory's empty sub-directories are saved
too (the metadata's ``dirs``); a directory holding no file at all is not committed.

Shape (docs/mount.md, "The outbox"; the states: docs/design.md §10)::

    outbox/model.pth              a staged file: one artifact with that one file
    outbox/model.pth.eio.yaml     its sidecar (metadata; consumed by the commit)
    outbox/run42/                 a staged directory: one artifact, files run42/<rel path>
    outbox/run42/.eio.yaml        the directory's sidecar (not saved as a file)
    outbox/model.pth -> ../artifacts/<id>     after the commit, until the user removes it
    outbox/.recovered/...         entries found uncommitted after the daemon stopped

**Staging.** Every staged object is an :class:`Item` with a stable number (*sid*). A
file's bytes live in ``<spool>/data/<sid>`` (written with ``pwrite``, read back by the
commit); the namespace (names, parents, owners, modes, metadata xattrs, the writers'
lineage scopes, commit state; empty directories too) is journalled in
``<spool>/journal.sqlite`` on every change of the namespace, not on every write. Both
survive a kill of the daemon: data sits in the kernel's page cache of a local file, the
journal is SQLite in WAL mode.

**When a top-level entry commits.** When no handle is open anywhere in it and nothing
has changed in it (write, create, rename, unlink, truncate, attribute, xattr, close) for
``DaemonSettings.outbox_quiet`` seconds; or at once on ``setfattr -n user.eio.commit -v 1``
(which then waits for the commit and reports its failure as the call's error). Never
automatically: names starting with ``.`` (rsync's and editors' temporaries), sidecars,
directories that hold no file, entries under ``.recovered/``, and entries whose writer
was killed by a signal while it had them open (a partial copy: the close arrives from a
dying process; the entry is marked ``error`` until it is written again or triggered).

**Commit.** While an entry commits, changing it is ``EBUSY``. On success the entry turns
into a symlink ``../artifacts/<id>`` (a new inode: the kernel's dentry is invalidated, and
outbox entries have a zero entry timeout, so the next path walk sees the link), its staged
bytes and its sidecar are dropped, and the daemon's query directories are invalidated.
A :class:`~elliptio.errors.UsageError` (bad sidecar, bad tag, a reserved name) leaves the
entry staged in state ``error`` with the message in ``user.eio.error`` and a WARNING log
line; any other :class:`~elliptio.errors.ElliptioError` (store or catalogue down) leaves it
``pending`` and retries with backoff. Nothing staged is dropped before the artifact exists.
A save whose catalogue write alone failed has made the artifact (``catalogued=False``): the
entry becomes its link all the same, and the backlog claims the metadata in the catalogue
again, with backoff, until it takes it (until then the link does not resolve).

**Owner and permissions.** The owner of an entry is the uid of the process that created
it (the FUSE request context), its artifact user that uid's login name (``uid<N>`` without
a passwd entry); environment variables do not enter. Only the owner (and root) may open,
list, look up or stat names inside, change, rename or delete a staged entry or read its
``user.*`` xattrs; ``outbox/`` is sticky like ``/tmp``, so anyone may create top-level
entries — a sidecar beside someone else's entry among them. So **metadata counts only when
the entry's owner wrote it**: a sidecar created by another uid, or opened for writing by
one (root included), and a ``user.eio.*`` attribute set by another uid are ignored for the
entry (neither applied, nor holding the commit back, nor refusing it, nor consumed by it;
one WARNING line at the commit names them). The uids are the kernel's, recorded when the
sidecar was created or opened and when the attribute was set, never read from a file.

**Lineage.** Creating or opening a file for writing records the writer's read scope
(:func:`~elliptiofs.readlog.scope_for`, the daemon's ``--scope``); the commit's
``based_on`` is every artifact the read log holds for those scopes, deduplicated in
first-read order — unless the sidecar or ``user.eio.based_on`` names it explicitly.

**Crash recovery.** On start, every top-level entry the journal holds uncommitted is
moved under ``.recovered/`` (never committed or dropped silently); the user commits it
(``mv`` it back into ``outbox/``, or the trigger xattr) or deletes it. Without a journal
(deleted, or a spool restored without it) the staged bytes in ``data/`` are kept all the
same: each file becomes ``.recovered/unnamed-<sid>``, owned by the spool file's owner —
the daemon's user, since who wrote it was known only to the journal
(:meth:`.journal.Journal.load`).

The parts, one job each (nothing here imports pyfuse3: refusals are
``OSError(errno, message)``, which ops maps to the same errno; answers are plain values
that ops copies into pyfuse3's objects)::

    items        a staged object (Item) and the outbox's vocabulary: sids, states,
                 sidecar names, refuse (pure)
    namespace    the entries in memory: names, parents, owners, who may do what (pure)
    journal      the spool: its lock, the SQLite journal, loading and recovery, the
                 commit's transaction
    metadata     sidecars and user.eio.* xattrs, what a commit saves, the writer's
                 provenance
    committer    when entries commit: the quiet period, the trigger, the retries with
                 backoff (an injected clock and save)
    saving       what a commit does: the save through the library, the link that
                 replaces the entry
    backlog      artifacts saved while the catalogue failed, claimed again until it
                 takes them
    operations   the POSIX operations (Outbox), wiring the parts together and doing the I/O
    values       the plain values it answers and takes (Attrs, Space, Change)

``/proc`` (the writer's command line, whether it is dying of a signal) is read through
:mod:`elliptiofs.procinfo`, which the read log uses too.
"""


from .committer import Committer, Failed, Refused
from .journal import Journal
from .metadata import merge_metadata, plan, sidecar_metadata, xattr_metadata
from .namespace import Item, Namespace, refuse
from .operations import Outbox
from .saving import Saver
from .values import Attrs, Change, Space

__all__ = ["Attrs", "Change", "Committer", "Failed", "Item", "Journal", "Namespace",
           "Outbox", "Refused", "Saver", "Space", "merge_metadata", "plan", "refuse",
           "sidecar_metadata", "xattr_metadata"]
