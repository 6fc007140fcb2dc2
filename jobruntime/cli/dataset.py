"""``jobruntime dataset``: a data owner encrypts, decrypts and inspects its datasets.

pyarrow, rich and the control-plane client are imported by the command that runs, not
when the parser is built, so ``--help`` stays quick.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobruntime.cli.common import add_connection, add_json, client_from, command, emit, group
from jobruntime.errors import ConfigError
from jobruntime.storage.uri import canonical_uri, open_storage

if TYPE_CHECKING:
    from jobruntime.controlplane.client import ControlPlaneClient
    from jobruntime.storage.base import Storage


ENCRYPT_EXAMPLES = [
    "jobruntime dataset encrypt customers.csv --to ./customers --key org-a/customers",
    "jobruntime dataset encrypt sales.csv --to az://data/sales --key org-b/sales \\\n"
    "      --rows-per-file 500000 --column-type amount=double --column-type day=date32 --json",
]

ENCRYPT_DESCRIPTION = """\
Encrypt a CSV or Parquet file into a new version of a dataset with the owner's key
(from the KMS owner API) and publish it.

A CSV's first line is its header; its column types are inferred from the first 4 MiB
unless --column-type sets them. Every file of the new version holds exactly
--rows-per-file rows but the last, which holds the rest; none is empty. A malformed
line is refused naming its line and column, never its content (source.malformed,
exit 2); a file with a header but no rows is refused (source.empty, exit 2), as an
empty version would replace the dataset's rows. On any failure nothing is published
and the parts written so far are removed.
"""

DECRYPT_EXAMPLES = [
    "jobruntime dataset decrypt ./overlap --to overlap.parquet",
    "jobruntime dataset decrypt file:///data/overlap --to overlap.csv --key org-a/overlap",
]

INSPECT_EXAMPLES = [
    "jobruntime dataset inspect ./customers",
    "jobruntime dataset inspect az://data/sales --json",
]


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def column_type(text: str) -> tuple[str, Any]:
    """argparse type: ``NAME=TYPE``, TYPE a pyarrow type name (int64, double, date32...)."""
    import pyarrow as pa

    name, eq, alias = text.rpartition("=")
    if not eq or not name or not alias:
        raise argparse.ArgumentTypeError(f"expected NAME=TYPE, not {text!r}")
    try:
        return name, pa.type_for_alias(alias.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown type {alias!r}: use a pyarrow type name such as int64, double, "
            "string, bool, date32 or timestamp[ms]"
        ) from None


def register(sub: Any) -> None:
    ds = group(sub, "dataset", "encrypt, decrypt and inspect encrypted datasets")

    e = command(
        ds,
        "encrypt",
        "encrypt a CSV or Parquet file into a new dataset version",
        ENCRYPT_EXAMPLES,
        description=ENCRYPT_DESCRIPTION,
    )
    e.add_argument(
        "source",
        type=Path,
        help="the plaintext: a .csv file (with a header line) or a .parquet file",
    )
    e.add_argument(
        "--to",
        required=True,
        type=canonical_uri,
        help="dataset URI: a path (made absolute), file:// or az://",
    )
    e.add_argument("--key", required=True, help="the dataset master key id (ORG/NAME)")
    e.add_argument(
        "--rows-per-file",
        type=positive_int,
        default=1_000_000,
        metavar="N",
        help="rows in each encrypted file, at least 1; the last file holds the rest "
        "(default 1,000,000)",
    )
    e.add_argument(
        "--column-type",
        type=column_type,
        action="append",
        default=[],
        metavar="NAME=TYPE",
        help="a CSV column's type (pyarrow name: int64, double, string, bool, date32, "
        "timestamp[ms]...) instead of the inferred one; repeat for more columns",
    )
    add_json(e, "the new version")
    add_connection(e, "")
    _principal_default_is_the_keys_owner(e)
    e.set_defaults(handler=encrypt)

    d = command(
        ds,
        "decrypt",
        "decrypt the latest version into a file only you read",
        DECRYPT_EXAMPLES,
    )
    d.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
    d.add_argument("--to", type=Path, required=True, help="a .parquet or .csv file")
    d.add_argument(
        "--key",
        help="the dataset master key id (ORG/NAME); default: the one the manifest names "
        "(the key then authenticates the manifest)",
    )
    add_json(d, "what was written")
    add_connection(d, "")
    _principal_default_is_the_keys_owner(d)
    d.set_defaults(handler=decrypt)

    i = command(
        ds,
        "inspect",
        "manifest, schema, rows and version; no key, no values",
        INSPECT_EXAMPLES,
    )
    i.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
    add_json(i, "the manifest's description (not authenticated: no key)")
    i.set_defaults(handler=inspect)


def _principal_default_is_the_keys_owner(p: argparse.ArgumentParser) -> None:
    for action in p._actions:
        if action.dest == "principal":
            action.help = "principal whose emulator token to use (default owner:ORG of the key)"


@contextmanager
def _owner(args: argparse.Namespace) -> Iterator[ControlPlaneClient]:
    if not args.principal:
        args.principal = f"owner:{args.key.split('/', 1)[0]}"
    with client_from(args) as client:
        yield client


@contextmanager
def _progress(title: str) -> Iterator[Callable[[int], None]]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn(f"{title}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task(title, total=None)
        yield lambda rows: bar.update(task, completed=rows)


def encrypt(args: argparse.Namespace) -> int:
    from jobruntime.dataset import owner
    from jobruntime.dataset.keyops import LocalMasterKey
    from jobruntime.dataset.registry import ControlPlaneRegistry
    from jobruntime.dataset.source import open_source

    types = dict(args.column_type)
    if len(types) < len(args.column_type):
        raise ConfigError("--column-type names a column more than once")
    # A missing, malformed (in its first block) or empty source fails before any key.
    schema, batches = open_source(args.source, types)
    storage = open_storage(args.to)
    new_root = _new_local_root(storage)
    try:
        with _owner(args) as client, _progress(f"encrypting {args.source.name}") as progress:
            registry = ControlPlaneRegistry(client, args.to, args.key)
            manifest = owner.encrypt(
                schema,
                batches,
                storage,
                args.to,
                LocalMasterKey(args.key, client.owner_key(args.key)),
                registry,
                args.rows_per_file,
                progress,
            )
    except BaseException:
        if new_root is not None:
            _remove_empty_dirs(new_root)
        raise
    emit(
        args,
        {
            "uri": args.to,
            "version": manifest.version,
            "rows": manifest.rows,
            "files": len(manifest.files),
            "manifest": manifest.digest,
        },
        f"{args.to}: version {manifest.version}, {manifest.rows:,} rows in "
        f"{len(manifest.files)} files, manifest {manifest.digest}",
    )
    return 0


def _new_local_root(storage: Storage) -> Path | None:
    """The local dataset directory, if this command is about to create it."""
    from jobruntime.storage.local import LocalStorage

    if isinstance(storage, LocalStorage) and not storage.root.exists():
        return storage.root
    return None


def _remove_empty_dirs(root: Path) -> None:
    """What a failed write into a new directory leaves: its empty directories (the staged
    parts are gone; rmdir removes only what is empty, so nobody else's file is touched)."""
    for directory in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
        with suppress(OSError):
            directory.rmdir()
    with suppress(OSError):
        root.rmdir()


def decrypt(args: argparse.Namespace) -> int:
    from jobruntime.dataset import owner
    from jobruntime.dataset.keyops import LocalMasterKey
    from jobruntime.dataset.registry import ControlPlaneRegistry

    if not args.key:
        # Read unauthenticated only to pick the key; decrypting checks the manifest with it.
        args.key = owner.describe(open_storage(args.uri), args.uri).key_id
    with _owner(args) as client, _progress(f"decrypting {args.uri}") as progress:
        registry = ControlPlaneRegistry(client, args.uri, args.key)
        manifest = owner.decrypt(
            open_storage(args.uri),
            args.uri,
            LocalMasterKey(args.key, client.owner_key(args.key)),
            registry,
            args.to,
            progress,
        )
    emit(
        args,
        {
            "to": str(args.to),
            "uri": args.uri,
            "version": manifest.version,
            "rows": manifest.rows,
            "key": args.key,
        },
        f"{args.to}: {manifest.rows:,} rows of {args.uri} version {manifest.version} (0600)",
    )
    return 0


def inspect(args: argparse.Namespace) -> int:
    from jobruntime.dataset import owner

    m = owner.describe(open_storage(args.uri), args.uri)
    ciphertext = sum(f.size for f in m.files)
    lines = [
        f"dataset   {m.dataset}",
        f"version   {m.version}  (manifest {m.digest}; not authenticated: inspect uses no key)",
        f"previous  {m.previous or '-'}",
        f"key id    {m.key_id}",
        f"rows      {m.rows:,} in {len(m.files)} files, {ciphertext:,} bytes of ciphertext",
        "schema",
        *(f"  {field.name}: {field.type}" for field in m.schema),
    ]
    emit(
        args,
        {
            "dataset": m.dataset,
            "version": m.version,
            "manifest": m.digest,
            "authenticated": False,
            "previous": m.previous,
            "key_id": m.key_id,
            "rows": m.rows,
            "files": len(m.files),
            "ciphertext_bytes": ciphertext,
            "schema": [{"name": f.name, "type": str(f.type)} for f in m.schema],
        },
        "\n".join(lines),
    )
    return 0
