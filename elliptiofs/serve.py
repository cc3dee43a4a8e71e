"""The daemon's life: :func:`serve` mounts, serves until unmounted or signalled, unmounts.

One exit stack and one nursery; each resource registers its own cleanup, torn down in
reverse (docs/design.md §9 gives the order and the threads).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
from collections.abc import Callable

import trio

from elliptio import Lake, Settings
from elliptio.redact import redact_url

from .kernel import indexer_warning, notify_systemd, when_initialised
from .settings import DaemonSettings
from .start import EXIT_CONFIG, EXIT_MOUNT, StartError, check_lake

log = logging.getLogger("elliptiofs")

#: catalogue calls in flight at once (searches, a network catalogue, scan planning)
CATALOGUE_THREADS = 8


async def _watch_signals(terminate: Callable[[], None]) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            terminate()
            return


async def serve(args: argparse.Namespace, settings: Settings, daemon: DaemonSettings,
                mountpoint: str, ready: Callable[[], None]) -> None:
    """Mount, serve until unmounted or signalled, unmount. Raises StartError before the
    mount is up; afterwards only bugs escape."""
    import pyfuse3

    from .ops import Operations
    from .outbox import Outbox
    from .reader import Reader
    from .readlog import ReadLog, ReadLogError, keep_pruned
    from .readsock import ReadsSocket
    from .scan import ScanAhead
    from .tree import Tree
    from .workers import Workers

    async with contextlib.AsyncExitStack() as stack:
        lake = Lake(settings)
        stack.callback(lake.close)
        await trio.to_thread.run_sync(check_lake, lake)
        try:
            readlog = ReadLog(daemon.readlog)
        except ReadLogError as exc:
            raise StartError(str(exc), EXIT_CONFIG) from None
        stack.callback(readlog.close)
        # the spool is locked and its journal read (crash recovery) before mounting
        outbox = Outbox(lake, readlog, daemon, scope=args.scope)
        stack.callback(outbox.close)  # after the nursery: a commit under way finishes
        reader = Reader(lake.store, budget=args.cache_mb << 20)
        stack.callback(reader.close)  # after the nursery: nothing reads any more
        catalogue_workers = Workers(CATALOGUE_THREADS, "eio-cat")
        stack.callback(catalogue_workers.close)  # after the nursery, likewise
        nursery = await stack.enter_async_context(trio.open_nursery())
        stack.callback(nursery.cancel_scope.cancel)  # LIFO: runs before the nursery waits
        tree = Tree(lake)
        scan = ScanAhead(tree, reader, catalogue_workers,
                         max_window=args.scan_ahead) if args.scan_ahead else None
        ops = Operations(tree, reader, readlog, catalogue_workers, scope=args.scope,
                         inline_catalogue=settings.catalogue.startswith("sqlite:"),
                         outbox=outbox, scan=scan)
        ops.enable_writeback_cache = args.writeback  # read by pyfuse3.init
        options = {"fsname=elliptiofs", "subtype=elliptiofs", "auto_unmount", "noatime"}
        if args.allow_other:
            options.add("allow_other")
        if args.debug:
            options.add("debug")
        try:
            pyfuse3.init(ops, mountpoint, options)
        except RuntimeError as exc:
            raise StartError(f"cannot mount on {mountpoint}: {exc}", EXIT_MOUNT) from None
        stack.callback(pyfuse3.close, unmount=True)
        # commits are told to the kernel through ops; LIFO: stop that before close()
        outbox.on_commit, outbox.invalidate = ops.artifact_committed, ops.invalidate_name
        stack.callback(outbox.detach)
        await nursery.start(outbox.run)
        # records of readers that are gone, but not those a staged entry still needs
        nursery.start_soon(keep_pruned, readlog, outbox.scopes_in_use)
        # library saves ask what their scope read through this mount (readsock.py)
        await nursery.start(ReadsSocket.for_daemon(readlog, args.scope, settings.store,
                                                   mountpoint, "readlog" in daemon.source).run)
        log.info("mounted %s on %s (catalogue %s)", redact_url(settings.store), mountpoint,
                 redact_url(settings.catalogue))
        if (warning := indexer_warning(mountpoint)) is not None:
            log.warning("%s", warning)
        nursery.start_soon(_watch_signals, pyfuse3.terminate)
        nursery.start_soon(when_initialised, mountpoint, ready)
        await pyfuse3.main()
        notify_systemd("STOPPING=1")
        log.info("unmounting %s", mountpoint)
