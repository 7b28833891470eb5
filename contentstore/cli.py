"""The ``contentstore`` command line.

Errors are one line on stderr (``contentstore: error: …``) with exit status 1; usage
errors exit 2; a traceback only with ``-v``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import traceback

from typing import TYPE_CHECKING

from contentstore.errors import ContentStoreError, UsageError
from contentstore.model.reference import Reference
from contentstore.progress import for_stream, human_size, quiet
from contentstore.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.store import Store

PROG = "contentstore"


class Context:
    """What every command gets: the parsed options and, lazily, the store."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._store: Store | None = None

    @property
    def store(self) -> Store:
        """The store, opened on first use: ``--help`` and usage errors import none of it."""
        if self._store is None:
            from contentstore.plugin import manager as pluginmanager
            from contentstore.store import Store

            disabled = {name[3:] for name in self.args.plugin_options if name.startswith("no:")}
            plugins = pluginmanager.create(disabled=disabled)
            for failure in plugins.failures:
                self.warn(f"plugin {failure.name!r} failed to load and is ignored: {failure.error}")
            self._store = Store(self.args.root, plugins=plugins, config=self.args.config)
        return self._store

    def out(self, text: str = "") -> None:
        print(text, flush=True)

    def info(self, text: str) -> None:
        if not self.args.quiet:
            print(text, flush=True)

    def warn(self, text: str) -> None:
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)


# -- commands ---------------------------------------------------------------------------------


def cmd_pull(ctx: Context) -> int:
    progress = quiet if ctx.args.quiet else for_stream(sys.stdout)
    store = ctx.store
    result = store.pull(ctx.args.ref, platform=ctx.args.platform, all_platforms=ctx.args.all_platforms,
                        all_tags=ctx.args.all_tags, progress=progress,
                        verify_diffids=True if ctx.args.verify_diffids else None)
    if ctx.args.all_tags:
        ctx.out(Reference.parse(ctx.args.ref, default_tag=None).name)
    else:
        ctx.out(result.reference)
    return 0


def cmd_push(ctx: Context) -> int:
    return _send(ctx, ctx.store.push)


def cmd_copy(ctx: Context) -> int:
    return _send(ctx, ctx.store.copy)


def _send(ctx: Context, operation) -> int:
    progress = quiet if ctx.args.quiet else for_stream(sys.stdout)
    result = operation(ctx.args.src, ctx.args.dest, progress=progress)
    if ctx.args.quiet:
        ctx.out(f"{result.reference.name}@{result.digest}")
    return 0


def cmd_unpack(ctx: Context) -> int:
    report = ctx.store.unpack(ctx.args.ref, ctx.args.dir, platform=ctx.args.platform,
                              rootless=True if ctx.args.rootless else None)
    for name in report.skipped_devices:
        ctx.warn(f"device node {name} skipped (needs root)")
    ctx.info(f"unpacked {report.layers} layers, {report.entries} entries into {ctx.args.dir}")
    return 0


def cmd_export(ctx: Context) -> int:
    ctx.store.export(ctx.args.ref, ctx.args.file, format=ctx.args.format, platform=ctx.args.platform)
    return 0


def cmd_import(ctx: Context) -> int:
    for image in ctx.store.import_archive(ctx.args.file):
        ctx.out(f"Loaded image: {image.reference}" if image.reference else f"Loaded image ID: {image.digest}")
    return 0


def cmd_login(ctx: Context) -> int:
    from contentstore.remote import login

    if ctx.args.password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    elif sys.stdin.isatty():
        import getpass
        password = getpass.getpass("Password: ")
    else:
        raise UsageError("give the password on standard input with --password-stdin")
    username = ctx.args.username
    if not username:
        if not sys.stdin.isatty() or ctx.args.password_stdin:
            raise UsageError("give the username with -u/--username")
        username = input("Username: ")
    where = login.login(ctx.args.registry, username, password, ctx.store.config, ctx.store.plugins)
    ctx.info(f"Credentials saved in {where}")
    ctx.out("Login Succeeded")
    return 0


def cmd_logout(ctx: Context) -> int:
    from contentstore.remote import login

    name = login.registry_name(ctx.args.registry)
    if login.logout(name):
        ctx.out(f"Removing login credentials for {name}")
    else:
        ctx.out(f"Not logged in to {name}")
    return 0


def cmd_blob_put(ctx: Context) -> int:
    source = ctx.args.file
    if source == "-":
        info = ctx.store.put(sys.stdin.buffer, expected=ctx.args.expected)
    else:
        with open(source, "rb") as f:
            info = ctx.store.put(f, expected=ctx.args.expected)
    ctx.out(info.digest)
    return 0


def cmd_blob_get(ctx: Context) -> int:
    with ctx.store.open(ctx.args.digest) as blob:
        if ctx.args.output in (None, "-"):
            shutil.copyfileobj(blob, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()
        else:
            with open(ctx.args.output, "wb") as out:
                shutil.copyfileobj(blob, out, 1 << 20)
    return 0


def cmd_blob_ls(ctx: Context) -> int:
    for blob in ctx.store.blobs():
        ctx.out(f"{blob.digest}\t{blob.size}")
    return 0


def cmd_images(ctx: Context) -> int:
    images = ctx.store.images()
    if ctx.args.format == "json":
        ctx.out(json.dumps([
            {"reference": image.reference, "digest": str(image.digest), "mediaType": image.media_type,
             "size": image.size, "platform": str(image.platform) if image.platform else None}
            for image in images
        ], indent=2))
        return 0
    rows = [("REFERENCE", "DIGEST", "SIZE")]
    rows += [(image.reference, image.digest, human_size(image.size)) for image in images]
    widths = [max(len(str(row[i])) for row in rows) for i in range(2)]
    ctx.out("\n".join(f"{ref:<{widths[0]}}   {digest:<{widths[1]}}   {size}" for ref, digest, size in rows))
    return 0


def cmd_inspect(ctx: Context) -> int:
    ctx.out(json.dumps(ctx.store.inspect(ctx.args.ref, platform=ctx.args.platform), indent=2))
    return 0


def cmd_tag(ctx: Context) -> int:
    ctx.store.tag(ctx.args.src, ctx.args.dest)
    return 0


def cmd_rmi(ctx: Context) -> int:
    status = 0
    for ref in ctx.args.refs:
        try:
            removed = ctx.store.untag(ref)
        except ContentStoreError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            status = 1
            continue
        ctx.info(f"Untagged: {ref}")
        for name in removed[1:]:
            ctx.info(f"Untagged: {name}")
    return status


def cmd_gc(ctx: Context) -> int:
    report = ctx.store.gc(dry_run=ctx.args.dry_run, ingests=ctx.args.ingests)
    verb = "would delete" if report.dry_run else "deleted"
    for blob in report.removed:
        ctx.info(f"{verb}: {blob.digest} ({human_size(blob.size)})")
    for ingest in report.ingests:
        ctx.info(f"{verb} ingest: {ingest.ref} ({human_size(ingest.offset)})")
    for stray in report.temporary:
        ctx.info(f"{verb} stray file: {stray.path} ({human_size(stray.size)})")
    what = "Reclaimable space" if report.dry_run else "Total reclaimed space"
    ctx.out(f"{what}: {human_size(report.removed_bytes)} "
            f"({len(report.removed)} blobs, {len(report.ingests)} ingests, {len(report.temporary)} stray "
            f"files; {report.kept} blobs kept)")
    return 0


def cmd_verify(ctx: Context) -> int:
    report = ctx.store.verify(repair=ctx.args.repair)
    removed = set(report.removed)
    for line in report.damaged:
        print(f"{PROG}: error: {line}", file=sys.stderr)
    for name, actual in report.corrupt:
        done = "; removed" if name in removed else ""
        print(f"{PROG}: error: corrupt blob {name}: content hashes to {actual}{done}", file=sys.stderr)
    for ref, digest in report.missing:
        print(f"{PROG}: error: {ref} points to missing blob {digest}", file=sys.stderr)
    for problem in report.sizes:
        where = "index.json" if problem.in_index else "a manifest"
        print(f"{PROG}: error: {problem.reference}: {where} says {problem.digest} has {problem.stated} "
              f"bytes, the blob has {problem.actual}", file=sys.stderr)
    for line in report.repaired:
        ctx.info(f"repaired: {line}")
    ctx.info(f"verified {report.checked} blobs: {len(report.corrupt)} corrupt, "
             f"{len(report.missing)} missing, {len(report.sizes)} wrong sizes, "
             f"{len(report.damaged)} damaged files or entries")
    return 0 if report.ok else 1


def cmd_plugins(ctx: Context) -> int:
    rows = [("NAME", "KIND", "VERSION", "DISTRIBUTION")]
    rows += [(p.name, p.kind, p.version, p.distribution) for p in ctx.store.plugins.info()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        ctx.out("   ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:3])) + "   " + row[3])
    for failure in ctx.store.plugins.failures:
        ctx.out(f"(broken) {failure.name}: {failure.error}")
    return 0


# -- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="A daemon-less local content store "
                                     "for container images and OCI artifacts.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--root", metavar="DIR", help="store root (default: $CONTENTSTORE_ROOT or "
                        "the user data directory)")
    parser.add_argument("--config", metavar="FILE", help="configuration file (default: "
                        "$CONTENTSTORE_CONFIG or the user config directory)")
    parser.add_argument("-q", "--quiet", action="store_true", help="print only what was asked for")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details; tracebacks on errors")
    parser.add_argument("-p", dest="plugin_options", metavar="no:NAME", action="append", default=[],
                        help="disable the plugin NAME (repeatable); also $CONTENTSTORE_DISABLE_PLUGINS")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pull = commands.add_parser("pull", help="pull an image or a repository from a registry")
    pull.add_argument("ref", metavar="REF")
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="platform to select from a "
                      "multi-platform image (default: this host's)")
    pull.add_argument("--all-platforms", action="store_true", help="keep every platform of an index")
    pull.add_argument("-a", "--all-tags", action="store_true", help="pull every tag of the repository")
    pull.add_argument("--verify-diffids", action="store_true", help="inflate each layer during the pull to "
                      "check its diffID against the image config (default: at first decompression)")
    pull.set_defaults(func=cmd_pull)

    push = commands.add_parser("push", help="push a local image (manifest list included) to a registry")
    push.add_argument("src", metavar="SRC")
    push.add_argument("dest", metavar="DEST", nargs="?")
    push.set_defaults(func=cmd_push)
    copy = commands.add_parser("copy", help="copy an image from registry to registry, through the store")
    copy.add_argument("src", metavar="SRC")
    copy.add_argument("dest", metavar="DEST")
    copy.set_defaults(func=cmd_copy)

    unpack = commands.add_parser("unpack", help="write an image's root filesystem into DIR (absent or empty)")
    unpack.add_argument("ref", metavar="REF")
    unpack.add_argument("dir", metavar="DIR")
    unpack.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    unpack.add_argument("--rootless", action="store_true", help="change no ownership, skip device "
                        "nodes (the default when not running as root)")
    unpack.set_defaults(func=cmd_unpack)

    export = commands.add_parser("export", help="write an image to an OCI archive or a docker-archive")
    export.add_argument("ref", metavar="REF")
    export.add_argument("file", metavar="FILE")
    export.add_argument("--format", choices=["oci", "docker"], default="oci")
    export.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="for --format docker: which platform")
    export.set_defaults(func=cmd_export)
    load = commands.add_parser("import", help="load an OCI archive or a docker-archive, verifying every blob")
    load.add_argument("file", metavar="FILE")
    load.set_defaults(func=cmd_import)

    login = commands.add_parser("login", help="check credentials and save them in Docker's config.json")
    login.add_argument("registry", metavar="REGISTRY")
    login.add_argument("-u", "--username")
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.set_defaults(func=cmd_login)
    logout = commands.add_parser("logout", help="remove saved credentials")
    logout.add_argument("registry", metavar="REGISTRY")
    logout.set_defaults(func=cmd_logout)

    blob = commands.add_parser("blob", help="raw blob access")
    blob_commands = blob.add_subparsers(dest="blob_command", metavar="SUBCOMMAND", required=True)
    put = blob_commands.add_parser("put", help="store a file ('-' for stdin); print its digest")
    put.add_argument("file")
    put.add_argument("--expected", metavar="DIGEST", help="refuse content with another digest")
    put.set_defaults(func=cmd_blob_put)
    get = blob_commands.add_parser("get", help="write a blob to stdout or a file")
    get.add_argument("digest")
    get.add_argument("-o", "--output", metavar="FILE")
    get.set_defaults(func=cmd_blob_get)
    blob_commands.add_parser("ls", help="list blobs: digest and size").set_defaults(func=cmd_blob_ls)

    images = commands.add_parser("images", help="list local references: reference, digest, size")
    images.add_argument("--format", choices=["table", "json"], default="table")
    images.set_defaults(func=cmd_images)

    inspect = commands.add_parser("inspect", help="JSON: digest, media type, platform, config, layers")
    inspect.add_argument("ref", metavar="REF-or-DIGEST")
    inspect.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    inspect.set_defaults(func=cmd_inspect)

    tag = commands.add_parser("tag", help="add a local reference")
    tag.add_argument("src", metavar="SRC")
    tag.add_argument("dest", metavar="DEST")
    tag.set_defaults(func=cmd_tag)

    rmi = commands.add_parser("rmi", help="remove local references (blobs stay until gc)")
    rmi.add_argument("refs", metavar="REF", nargs="+")
    rmi.set_defaults(func=cmd_rmi)

    gc = commands.add_parser("gc", help="delete blobs no reference reaches, stray temporary files and "
                             "ingests idle for 24 h; report what and how many bytes")
    gc.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    gc.add_argument("--ingests", action="store_true", help="also every ingest no running process holds "
                    "(what a killed pull or put left), however recent")
    gc.set_defaults(func=cmd_gc)

    verify = commands.add_parser("verify", help="rehash every blob, check every descriptor's size; "
                                 "non-zero exit naming each corrupt or missing one")
    verify.add_argument("--repair", action="store_true", help="delete corrupt blobs (the next pull "
                        "fetches them again), rebuild metadata that is only a cache, correct "
                        "index.json sizes")
    verify.set_defaults(func=cmd_verify)
    commands.add_parser("plugins", help="installed plugins: name, kind, version, distribution"
                        ).set_defaults(func=cmd_plugins)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for option in args.plugin_options:
        if not option.startswith("no:") or len(option) <= 3:
            parser.error(f"-p takes no:NAME, not {option!r}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    if not args.verbose:  # urllib3 reports each retry; the final error says enough
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    ctx = Context(args)
    try:
        return args.func(ctx)
    except UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - every error ends as one line, exit status 1
        if args.verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr, flush=True)
        return 1


def _message(exc: Exception) -> str:
    """The one line that describes ``exc``: the store's own errors say what they are; an
    operating system error names its file; anything else is a bug, said as such."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, ContentStoreError):
        return text or type(exc).__name__
    if isinstance(exc, OSError):
        if exc.filename:
            return f"{exc.strerror or exc}: {exc.filename}"
        return text or type(exc).__name__
    return f"unexpected {type(exc).__name__}: {text} (this is a bug; -v shows where)"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
