# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: this command completes itself)
"""The ``contentstore`` command line.

Errors are one line on stderr (``contentstore: error: …``) with exit status 1; usage
errors exit 2; a traceback only with ``-v``. With ``--progress json`` stderr holds only
JSON objects, one a line: progress events, warnings, and the final result or error.

Plugins are loaded before the arguments are parsed, as pytest does, so that they can add
commands (``contentstore_add_commands``); ``-p no:NAME`` among the global options is
read first so a switched-off plugin is never imported. A plugin that fails to load is
one warning on stderr, none with ``-q``.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import os
import shutil
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Iterable

from contentstore.errors import ContentStoreError, UsageError
from contentstore.model.reference import Reference
from contentstore.progress import JsonOutput, PlainOutput, TerminalOutput, for_stream, human_size, quiet
from contentstore.version import __version__

if TYPE_CHECKING:  # pragma: no cover
    from contentstore.plugin.manager import Plugins
    from contentstore.store import Store

PROG = "contentstore"
#: The argparse default that marks a command a plugin added (its plugin's name).
PLUGIN_DEST = "_contentstore_plugin"


class Context:
    """What every command gets: the parsed options, the plugins and, lazily, the store."""

    def __init__(self, args: argparse.Namespace, plugins: Plugins | None = None):
        self.args = args
        self.plugins = plugins
        self._store: Store | None = None
        #: ``--progress json``: where every event, warning and the final result go.
        self.json: JsonOutput | None = None
        if getattr(args, "progress", "auto") == "json":
            self.json = JsonOutput(sys.stderr, messages=None if args.quiet else sys.stdout)

    @property
    def store(self) -> Store:
        """The store, opened on first use: ``--help`` and usage errors open none of it."""
        if self._store is None:
            from contentstore.store import Store

            if self.plugins is None:
                self.plugins = load_plugins(self.args.plugin_options, warn=self.plugin_warning)
            self._store = Store(self.args.root, plugins=self.plugins, config=self.args.config)
        return self._store

    def plugin_warning(self, text: str) -> None:
        """A plugin failed to load or to handle a notification: one line, none with -q."""
        if not self.args.quiet:
            self.warn(text)

    def out(self, text: str = "") -> None:
        print(text, flush=True)

    def info(self, text: str) -> None:
        if not self.args.quiet:
            print(text, flush=True)

    def warn(self, text: str) -> None:
        if self.json is not None:
            self.json.warning(text)
            return
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    def progress(self):
        """The progress callback ``--progress`` asks for (``-q``: none, unless json)."""
        mode = getattr(self.args, "progress", "auto")
        if self.json is not None:
            return self.json
        if self.args.quiet:
            return quiet
        if mode == "tty":
            return TerminalOutput(sys.stdout)
        if mode == "plain":
            return PlainOutput(sys.stdout)
        return for_stream(sys.stdout)


# -- commands ---------------------------------------------------------------------------------


def cmd_pull(ctx: Context) -> int:
    progress = ctx.progress()
    store = ctx.store
    result = store.pull(ctx.args.ref, platform=ctx.args.platform, all_platforms=ctx.args.all_platforms,
                        all_tags=ctx.args.all_tags, progress=progress,
                        verify_diffids=True if ctx.args.verify_diffids else None,
                        referrers=ctx.args.referrers)
    if ctx.args.all_tags:
        name = Reference.parse(ctx.args.ref, default_tag=None).name
        ctx.out(name)
        if ctx.json is not None:
            ctx.json.result(reference=name, images=[{"reference": image.reference, "digest": str(image.digest)}
                                                    for image in result])
    else:
        ctx.out(result.reference)
        if ctx.json is not None:
            ctx.json.result(reference=result.reference, digest=str(result.digest))
    return 0


def cmd_push(ctx: Context) -> int:
    return _send(ctx, ctx.store.push)


def cmd_copy(ctx: Context) -> int:
    progress = quiet if ctx.args.quiet else for_stream(sys.stdout)
    result = ctx.store.copy(ctx.args.src, ctx.args.dest, progress=progress, platform=ctx.args.platform,
                            all_platforms=ctx.args.all_platforms, referrers=ctx.args.referrers)
    if ctx.args.quiet:
        ctx.out(f"{result.reference.name}@{result.digest}")
    return 0


def _send(ctx: Context, operation) -> int:
    result = operation(ctx.args.src, ctx.args.dest, progress=ctx.progress(), referrers=ctx.args.referrers)
    if ctx.args.quiet:
        ctx.out(f"{result.reference.name}@{result.digest}")
    if ctx.json is not None:
        ctx.json.result(reference=str(result.reference), digest=str(result.digest), size=result.size,
                        pushed=result.pushed, mounted=result.mounted, existed=result.existed)
    return 0


def cmd_unpack(ctx: Context) -> int:
    report = ctx.store.unpack(ctx.args.ref, ctx.args.dir, platform=ctx.args.platform,
                              rootless=True if ctx.args.rootless else None)
    if report.device_placeholders:
        ctx.warn(f"{len(report.device_placeholders)} device node(s) written as empty files (devices need "
                 f"root): {_some(report.device_placeholders)}")
    if report.dropped_xattrs:
        names: dict[str, int] = {}
        for _, name in report.dropped_xattrs:
            names[name] = names.get(name, 0) + 1
        ctx.warn(f"{report.xattrs_dropped} extended attribute(s) could not be set: "
                 f"{_some([f'{name} ({count})' for name, count in names.items()])}; first on "
                 f"{report.dropped_xattrs[0][0]}")
    ctx.info(f"unpacked {report.layers} layers, {report.entries} entries into {ctx.args.dir}")
    return 0


def _some(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


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
             "size": image.size, "platform": str(image.platform) if image.platform else None,
             "artifactType": image.artifact_type}
            for image in images
        ], indent=2))
        return 0
    rows = [("REFERENCE", "DIGEST", "SIZE", "TYPE")]
    rows += [(image.reference, image.digest, human_size(image.size), image.artifact_type or "image")
             for image in images]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    ctx.out("\n".join(f"{ref:<{widths[0]}}   {digest:<{widths[1]}}   {size:<{widths[2]}}   {kind}"
                      for ref, digest, size, kind in rows))
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


def cmd_artifact_put(ctx: Context) -> int:
    from contentstore.model.artifact import file_spec

    pairs = {}
    for item in ctx.args.annotations:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--annotation takes KEY=VALUE, not {item!r}")
        pairs[key] = value
    files = [file_spec(text) for text in ctx.args.files]
    descriptor = ctx.store.put_artifact(ctx.args.ref, files, artifact_type=ctx.args.artifact_type,
                                        subject=ctx.args.subject, annotations=pairs or None)
    ctx.out(descriptor.digest)
    return 0


def cmd_artifact_get(ctx: Context) -> int:
    progress = quiet if ctx.args.quiet else for_stream(sys.stdout)
    written = ctx.store.get_artifact(ctx.args.ref, ctx.args.output or ".", remote=not ctx.args.local,
                                     progress=progress)
    from contentstore.model.artifact import EMPTY_DESCRIPTOR

    for layer in written.untitled:
        if layer.digest != EMPTY_DESCRIPTOR.digest:
            ctx.warn(f"layer {layer.digest} ({layer.media_type}) has no title: not written")
    for path in written.files:
        ctx.out(str(path))
    return 0


def cmd_referrers(ctx: Context) -> int:
    from contentstore.model.artifact import referrers_index

    found = ctx.store.referrers(ctx.args.ref, artifact_type=ctx.args.artifact_type, remote=not ctx.args.local)
    for warning in getattr(found, "warnings", []):
        ctx.warn(warning)
    if ctx.args.format == "json":
        ctx.out(referrers_index(found).decode())
        return 0
    rows = [("DIGEST", "ARTIFACT TYPE", "SIZE", "ANNOTATIONS")]
    rows += [(r.digest, r.artifact_type or "-", human_size(r.size),
              ",".join(f"{k}={v}" for k, v in sorted(r.annotations.items())) or "-") for r in found]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    for digest, kind, size, notes in rows:
        ctx.out(f"{digest:<{widths[0]}}   {kind:<{widths[1]}}   {size:<{widths[2]}}   {notes}")
    return 0


def cmd_plugins(ctx: Context) -> int:
    rows = [("NAME", "KIND", "VERSION", "DISTRIBUTION")]
    rows += [(p.name, p.kind, p.version, p.distribution) for p in ctx.store.plugins.info()]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        ctx.out("   ".join(f"{cell:<{widths[i]}}" for i, cell in enumerate(row[:3])) + "   " + row[3])
    for failure in ctx.store.plugins.failures:
        ctx.out(f"(broken) {failure.name}: {failure.error}")
    return 0


# -- remote commands: look at a registry without pulling, delete, sync ----------------------------


def _messages(ctx: Context):
    """Where a remote command's messages go (an endpoint passed over): stderr, so that
    stdout holds only the data asked for."""
    return quiet if ctx.args.quiet else for_stream(sys.stderr)


def cmd_ls(ctx: Context) -> int:
    tags = ctx.store.tags(ctx.args.repository, progress=_messages(ctx))
    if ctx.args.format == "json":
        name = Reference.parse(ctx.args.repository, default_tag=None).name
        ctx.out(json.dumps({"repository": name, "tags": tags}, indent=2))
    else:
        for tag in tags:
            ctx.out(tag)
    return 0


def cmd_catalog(ctx: Context) -> int:
    if ctx.args.n is not None and ctx.args.n < 1:
        raise UsageError("-n takes a number of at least 1")
    repositories = ctx.store.catalog(ctx.args.registry, n=ctx.args.n, last=ctx.args.last,
                                     progress=_messages(ctx))
    if ctx.args.format == "json":
        ctx.out(json.dumps({"registry": ctx.args.registry, "repositories": repositories}, indent=2))
    else:
        for name in repositories:
            ctx.out(name)
    return 0


def cmd_manifest(ctx: Context) -> int:
    found = ctx.store.remote_manifest(ctx.args.ref, raw=ctx.args.raw, platform=ctx.args.platform,
                                      progress=_messages(ctx))
    if ctx.args.raw:
        sys.stdout.buffer.write(found)  # the bytes as served: their digest is the manifest's
        sys.stdout.buffer.flush()
    else:
        ctx.out(json.dumps(found, indent=2))
    return 0


def cmd_digest(ctx: Context) -> int:
    digest = ctx.store.remote_digest(ctx.args.ref, progress=_messages(ctx))
    if ctx.args.format == "json":
        ctx.out(json.dumps({"reference": str(Reference.parse(ctx.args.ref)), "digest": str(digest)}, indent=2))
    else:
        ctx.out(digest)
    return 0


def cmd_delete(ctx: Context) -> int:
    digest = ctx.store.delete_remote(ctx.args.ref, progress=_messages(ctx))
    name = Reference.parse(ctx.args.ref).name
    if ctx.args.format == "json":
        ctx.out(json.dumps({"reference": str(Reference.parse(ctx.args.ref)), "deleted": f"{name}@{digest}"},
                           indent=2))
    else:
        ctx.out(f"Deleted: {name}@{digest}")
    return 0


def cmd_sync(ctx: Context) -> int:
    args = ctx.args
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs takes a number of at least 1")
    as_json = args.format == "json"
    progress = quiet if args.quiet or as_json else for_stream(sys.stdout)
    report = ctx.store.sync(args.src, args.dest, tags=args.tags, latest=args.latest, repos=args.repos,
                            platform=args.platform, all_platforms=args.all_platforms, referrers=args.referrers,
                            dry_run=args.dry_run, jobs=args.jobs, progress=progress)
    if as_json:
        ctx.out(json.dumps({"copied": len(report.copied), "skipped": len(report.skipped),
                            "failed": len(report.failed), "dryRun": report.dry_run,
                            "images": [vars(item) for item in report.items]}, indent=2))
    else:
        ctx.out(f"Synced {args.src} to {args.dest}: {report.summary()}")
    for item in report.failed:
        print(f"{PROG}: error: {item.source} -> {item.destination}: {item.error}", file=sys.stderr, flush=True)
    return 0 if report.ok else 1


def _add_platform_options(parser, what: str, referrers: bool = True) -> None:
    parser.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", action="append",
                        help=f"copy this platform of {what} (repeatable, or comma-separated); the index is "
                        "rewritten to list only those (a new digest)")
    parser.add_argument("--all-platforms", action="store_true", help="copy every platform, the index as "
                        "served, digests kept (the default)")
    if referrers:
        parser.add_argument("--referrers", action="store_true", help="bring the referrers (signatures, "
                            "SBOMs) along, and theirs (digests kept)")


def _add_remote_commands(commands) -> None:
    """``ls``, ``catalog``, ``manifest``, ``digest``, ``delete``, ``sync``, and the
    platform options of ``copy``."""
    _add_platform_options(commands.choices["copy"], "an index", referrers=False)  # copy has it already

    sync = commands.add_parser("sync", help="copy a repository (every tag) or a registry (its catalog) to "
                               "another registry or prefix; images DEST already has (a HEAD) are skipped")
    sync.add_argument("src", metavar="SRC", help="a repository (REGISTRY/NAME, every tag; or REGISTRY/NAME:TAG) "
                      "or a registry (HOST[:PORT], every repository of its catalog)")
    sync.add_argument("dest", metavar="DEST", help="a registry (HOST[:PORT]) or a registry and a repository "
                      "prefix (HOST[:PORT]/PREFIX); each repository keeps its path under it")
    sync.add_argument("--tags", metavar="REGEX", help="only tags this regular expression matches (whole tag)")
    sync.add_argument("--latest", type=int, metavar="N", help="only the N highest tags read as semantic "
                      "versions (tags that are no versions are left out)")
    sync.add_argument("--repos", metavar="REGEX", help="with a registry as SRC: only repositories this "
                      "regular expression matches (whole name)")
    _add_platform_options(sync, "each index")
    sync.add_argument("--dry-run", action="store_true", help="only the HEADs: say what would be copied")
    sync.add_argument("-j", "--jobs", type=int, default=None, metavar="N", help="images copied at once "
                      "(default 4)")
    sync.add_argument("--format", choices=["table", "json"], default="table")
    sync.set_defaults(func=cmd_sync)

    ls = commands.add_parser("ls", help="list the tags of a remote repository (nothing is pulled)")
    ls.add_argument("repository", metavar="REPO")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.set_defaults(func=cmd_ls)

    catalog = commands.add_parser("catalog", help="list the repositories of a registry (pages followed)")
    catalog.add_argument("registry", metavar="REGISTRY")
    catalog.add_argument("-n", type=int, metavar="N", help="at most N repositories (asked in pages of N)")
    catalog.add_argument("--last", metavar="NAME", help="start after the repository NAME")
    catalog.add_argument("--format", choices=["table", "json"], default="table")
    catalog.set_defaults(func=cmd_catalog)

    manifest = commands.add_parser("manifest", help="a remote manifest without pulling: JSON as inspect "
                                   "prints it, or the bytes as served (--raw)")
    manifest.add_argument("ref", metavar="REF")
    manifest.add_argument("--raw", action="store_true", help="the bytes as the registry serves them")
    manifest.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="of an index: that platform's "
                          "manifest")
    manifest.set_defaults(func=cmd_manifest)

    digest = commands.add_parser("digest", help="the remote digest, from a HEAD (no pull-rate cost on "
                                 "Docker Hub)")
    digest.add_argument("ref", metavar="REF")
    digest.add_argument("--format", choices=["table", "json"], default="table")
    digest.set_defaults(func=cmd_digest)

    delete = commands.add_parser("delete", help="delete a remote manifest (a tag is resolved to its digest "
                                 "first; every tag pointing there goes with it)")
    delete.add_argument("ref", metavar="REF")
    delete.add_argument("--format", choices=["table", "json"], default="table")
    delete.set_defaults(func=cmd_delete)


# -- shell completion -------------------------------------------------------------------------


def complete_references(prefix: str = "", parsed_args: argparse.Namespace | None = None, **_) -> list[str]:
    """Local references for shell completion: the names in the store's ``index.json``
    (``--root``, else ``$CONTENTSTORE_ROOT``, else the default root), and Docker's short
    form of Docker Hub's (``alpine:latest``). Reads that one file, opens no store."""
    root = getattr(parsed_args, "root", None) or os.environ.get("CONTENTSTORE_ROOT")
    if not root:
        import platformdirs

        root = platformdirs.user_data_path("contentstore")
    try:
        with open(os.path.join(root, "index.json"), "rb") as f:
            entries = json.load(f).get("manifests") or []
    except (OSError, ValueError, AttributeError, RecursionError):
        return []
    names = set()
    for entry in entries if isinstance(entries, list) else []:
        annotations = entry.get("annotations") if isinstance(entry, dict) else None
        name = annotations.get("org.opencontainers.image.ref.name") if isinstance(annotations, dict) else None
        if not isinstance(name, str):
            continue
        names.add(name)
        try:
            names.add(Reference.parse(name).familiar())
        except ValueError:
            pass
    return sorted(name for name in names if name.startswith(prefix))


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this run is one (argcomplete
    sets ``_ARGCOMPLETE``); argcomplete is imported only then."""
    try:
        import argcomplete
    except ImportError:  # pragma: no cover - a dependency; without it, no completion
        return
    argcomplete.autocomplete(parser)


# -- parser -----------------------------------------------------------------------------------


def disabled_plugins(options: Iterable[str]) -> set[str]:
    """The plugin names ``-p no:NAME`` options switch off."""
    return {option[3:] for option in options if option.startswith("no:") and len(option) > 3}


def load_plugins(options: Iterable[str], warn=None, extra_plugins: Iterable[tuple[str, object]] = ()) -> Plugins:
    from contentstore.plugin import manager as pluginmanager

    return pluginmanager.create(disabled=disabled_plugins(options), extra_plugins=extra_plugins, warn=warn)


#: Global options that take a value, as ``build_parser`` defines them.
_VALUE_OPTIONS = {"--root", "--config", "-p"}


def global_plugin_options(argv: list[str]) -> list[str]:
    """The ``-p`` values among the global options (those before the command), read before
    the parser exists, since plugins add commands to it (pytest reads ``-p`` so too)."""
    values = []
    position = 0
    while position < len(argv):
        arg = argv[position]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            break  # the command
        name, equals, value = arg.partition("=")
        if arg.startswith("-p") and not arg.startswith("--"):
            if equals and name == "-p":
                values.append(value)
            elif len(arg) > 2:
                values.append(arg[2:])
            elif position + 1 < len(argv):
                values.append(argv[position + 1])
                position += 1
        elif name in _VALUE_OPTIONS and not equals:
            position += 1  # skip its value
        position += 1
    return values


def build_parser(plugins: Plugins | None = None) -> argparse.ArgumentParser:
    """The command line's parser; with ``plugins``, the commands they add too."""
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
    parser.add_argument("--progress", choices=["auto", "tty", "plain", "json"], default="auto",
                        help="how pull, push and copy report progress: a live bar on a terminal and plain "
                        "lines otherwise (auto), either one (tty, plain), or one JSON object per event "
                        "on stderr, ending with the result (json)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    pull = commands.add_parser("pull", help="pull an image or a repository from a registry")
    pull.add_argument("ref", metavar="REF").completer = complete_references
    pull.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="platform to select from a "
                      "multi-platform image (default: this host's)")
    pull.add_argument("--all-platforms", action="store_true", help="keep every platform of an index")
    pull.add_argument("-a", "--all-tags", action="store_true", help="pull every tag of the repository")
    pull.add_argument("--verify-diffids", action="store_true", help="inflate each layer during the pull to "
                      "check its diffID against the image config (default: at first decompression)")
    pull.add_argument("--referrers", action="store_true", help="also pull the referrers (signatures, SBOMs) "
                      "of what is pulled, and theirs")
    pull.set_defaults(func=cmd_pull)

    push = commands.add_parser("push", help="push a local image (manifest list included) to a registry")
    push.add_argument("src", metavar="SRC").completer = complete_references
    push.add_argument("dest", metavar="DEST", nargs="?")
    push.add_argument("--referrers", action="store_true", help="also push the store's referrers of the "
                      "image, and theirs")
    push.set_defaults(func=cmd_push)
    copy = commands.add_parser("copy", help="copy an image from registry to registry, through the store")
    copy.add_argument("src", metavar="SRC")
    copy.add_argument("dest", metavar="DEST")
    copy.add_argument("--referrers", action="store_true", help="bring the referrers along (digests kept)")
    copy.set_defaults(func=cmd_copy)

    artifact = commands.add_parser("artifact", help="OCI 1.1 artifacts: files in a manifest")
    artifact_commands = artifact.add_subparsers(dest="artifact_command", metavar="SUBCOMMAND", required=True)
    put_artifact = artifact_commands.add_parser(
        "put", help="store files as an artifact tagged REF; print its digest")
    put_artifact.add_argument("ref", metavar="REF")
    put_artifact.add_argument("files", metavar="FILE[:MEDIATYPE]", nargs="*",
                              help="a file, titled with its base name (default type application/octet-stream)")
    put_artifact.add_argument("--artifact-type", metavar="TYPE",
                              help="the artifactType (default application/vnd.unknown.artifact.v1)")
    put_artifact.add_argument("--subject", metavar="REF", help="the manifest this artifact refers to (in the "
                              "store, else on its registry)")
    put_artifact.add_argument("--annotation", dest="annotations", metavar="KEY=VALUE", action="append",
                              default=[], help="a manifest annotation (repeatable)")
    put_artifact.set_defaults(func=cmd_artifact_put)
    get_artifact = artifact_commands.add_parser(
        "get", help="pull an artifact (any type) and write its files by title into DIR")
    get_artifact.add_argument("ref", metavar="REF")
    get_artifact.add_argument("-o", "--output", metavar="DIR", help="where to write (default: the current "
                              "directory; created if absent)")
    get_artifact.add_argument("--local", action="store_true", help="from the store, without the registry")
    get_artifact.set_defaults(func=cmd_artifact_get)

    referrers = commands.add_parser("referrers", help="list the referrers of a manifest (signatures, SBOMs)")
    referrers.add_argument("ref", metavar="REF")
    referrers.add_argument("--artifact-type", metavar="TYPE", help="only referrers of this artifactType")
    referrers.add_argument("--local", action="store_true", help="what the store holds, not the registry")
    referrers.add_argument("--format", choices=["table", "json"], default="table",
                           help="json: an OCI image index")
    referrers.set_defaults(func=cmd_referrers)

    unpack = commands.add_parser("unpack", help="write an image's root filesystem into DIR (absent or empty)")
    unpack.add_argument("ref", metavar="REF").completer = complete_references
    unpack.add_argument("dir", metavar="DIR")
    unpack.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    unpack.add_argument("--rootless", action="store_true", help="change no ownership, write device "
                        "nodes as empty files (the default when not running as root)")
    unpack.set_defaults(func=cmd_unpack)

    export = commands.add_parser("export", help="write an image to an OCI archive or a docker-archive")
    export.add_argument("ref", metavar="REF").completer = complete_references
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
    inspect.add_argument("ref", metavar="REF-or-DIGEST").completer = complete_references
    inspect.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    inspect.set_defaults(func=cmd_inspect)

    tag = commands.add_parser("tag", help="add a local reference")
    tag.add_argument("src", metavar="SRC").completer = complete_references
    tag.add_argument("dest", metavar="DEST")
    tag.set_defaults(func=cmd_tag)

    rmi = commands.add_parser("rmi", help="remove local references (blobs stay until gc)")
    rmi.add_argument("refs", metavar="REF", nargs="+").completer = complete_references
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
    _add_remote_commands(commands)
    if plugins is not None:
        for command, plugin in plugins.add_commands(commands).items():
            commands.choices[command].set_defaults(**{PLUGIN_DEST: plugin})
    return parser


def main(argv: list[str] | None = None, extra_plugins: Iterable[tuple[str, object]] = ()) -> int:
    """Run the command line; ``extra_plugins`` (``(name, plugin)`` pairs) are registered
    besides the installed ones, and obey ``-p no:NAME`` as they do (tests, embedders)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    failures: list[str] = []
    try:
        plugins = load_plugins(global_plugin_options(argv), warn=failures.append, extra_plugins=extra_plugins)
        parser = build_parser(plugins)
    except ContentStoreError as exc:  # a required plugin switched off; a plugin's command refused
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr, flush=True)
        return 1
    if "_ARGCOMPLETE" in os.environ:
        _complete(parser)
    args = parser.parse_args(argv)
    for option in args.plugin_options:
        if not option.startswith("no:") or len(option) <= 3:
            parser.error(f"-p takes no:NAME, not {option!r}")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format=f"{PROG}: %(levelname)s: %(message)s")
    if not args.verbose:  # urllib3 reports each retry; the final error says enough
        logging.getLogger("urllib3").setLevel(logging.ERROR)
    ctx = Context(args, plugins)
    if ctx.json is not None:
        _json_logging()
    for failure in failures:
        ctx.plugin_warning(failure)
    plugins.warn = ctx.plugin_warning
    try:
        plugin = getattr(args, PLUGIN_DEST, None)
        if plugin is not None:
            store = ctx.store
            store.config  # noqa: B018 - loaded, so the plugin's settings are read first
            return plugins.run_command(plugin, args.command, getattr(args, "func", None), store, args)
        return args.func(ctx)
    except UsageError as exc:
        parser.error(str(exc))
    except KeyboardInterrupt:
        if ctx.json is not None:
            ctx.json.error("interrupted")
        else:
            print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:  # noqa: BLE001 - every error ends as one line, exit status 1
        if ctx.json is not None:
            ctx.json.error(_message(exc), **({"traceback": traceback.format_exc()} if args.verbose else {}))
            return 1
        if args.verbose:
            traceback.print_exc()
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr, flush=True)
        return 1


def run() -> None:
    """The program: the ``contentstore`` script and ``python -m contentstore``.

    :func:`main` on ``sys.argv``, then the exit as the interpreter makes it (threads
    that are not daemons waited for, ``atexit`` handlers run, stdout and stderr
    flushed), but without tearing the interpreter down: freeing every module and object
    one by one only costs time (about 20 ms after a pull, a twentieth of it).
    """
    status = main()
    if not isinstance(status, int) or any(
            not thread.daemon for thread in threading.enumerate() if thread is not threading.main_thread()):
        sys.exit(status)  # the interpreter waits for the thread
    atexit._run_exitfuncs()  # logging's, the plugins'
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(status)  # the interpreter reports what cannot be written, as ever
    os._exit(status)


class _JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"log": record.levelname.lower(), "logger": record.name, "message": record.getMessage()},
                          separators=(", ", ": "))


def _json_logging() -> None:
    """``--progress json``: log records (and Python warnings) as JSON objects too."""
    logging.captureWarnings(True)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(_JsonLogFormatter())


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
    run()
