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

from jobruntime.cli.common import add_connection, client_from
from jobruntime.errors import ConfigError
from jobruntime.storage.uri import canonical_uri, open_storage

if TYPE_CHECKING:
    from jobruntime.controlplane.client import ControlPlaneClient
    from jobruntime.storage.base import Storage


ENCRYPT_EXAMPLES = """\
examples:
  jobruntime dataset encrypt customers.csv --to ./customers --key org-a/customers \\
      --emulator-state .state/emulator
  jobruntime dataset encrypt sales.csv --to az://data/sales --key org-b/sales \\
      --rows-per-file 500000 --column-type amount=double --column-type day=date32
"""

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

DECRYPT_EXAMPLES = """\
examples:
  jobruntime dataset decrypt ./overlap --to overlap.parquet --emulator-state .state/emulator
  jobruntime dataset decrypt file:///data/overlap --to overlap.csv --key org-a/overlap
"""

INSPECT_EXAMPLES = """\
examples:
  jobruntime dataset inspect ./customers
  jobruntime dataset inspect az://data/sales
"""


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
    p = sub.add_parser("dataset", help="encrypt, decrypt and inspect encrypted datasets")
    ds = p.add_subparsers(dest="dataset_command", required=True)
    raw = argparse.RawDescriptionHelpFormatter

    e = ds.add_parser(
        "encrypt",
        help="encrypt a CSV or Parquet file into a new dataset version",
        description=ENCRYPT_DESCRIPTION,
        epilog=ENCRYPT_EXAMPLES,
        formatter_class=raw,
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
    add_connection(e, "")
    _principal_default_is_the_keys_owner(e)
    e.set_defaults(handler=encrypt)

    d = ds.add_parser(
        "decrypt",
        help="decrypt the latest version into a file only you read",
        epilog=DECRYPT_EXAMPLES,
        formatter_class=raw,
    )
    d.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
    d.add_argument("--to", type=Path, required=True, help="a .parquet or .csv file")
    d.add_argument(
        "--key",
        help="the dataset master key id (ORG/NAME); default: the one the manifest names "
        "(the key then authenticates the manifest)",
    )
    add_connection(d, "")
    _principal_default_is_the_keys_owner(d)
    d.set_defaults(handler=decrypt)

    i = ds.add_parser(
        "inspect",
        help="manifest, schema, rows and version; no key, no values",
        epilog=INSPECT_EXAMPLES,
        formatter_class=raw,
    )
    i.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
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
    print(
        f"{args.to}: version {manifest.version}, {manifest.rows:,} rows in "
        f"{len(manifest.files)} files, manifest {manifest.digest}"
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
    print(f"{args.to}: {manifest.rows:,} rows of {args.uri} version {manifest.version} (0600)")
    return 0


def inspect(args: argparse.Namespace) -> int:
    from jobruntime.dataset import owner

    m = owner.describe(open_storage(args.uri), args.uri)
    print(f"dataset   {m.dataset}")
    print(f"version   {m.version}  (manifest {m.digest}; not authenticated: inspect uses no key)")
    print(f"previous  {m.previous or '-'}")
    print(f"key id    {m.key_id}")
    print(
        f"rows      {m.rows:,} in {len(m.files)} files, "
        f"{sum(f.size for f in m.files):,} bytes of ciphertext"
    )
    print("schema")
    for field in m.schema:
        print(f"  {field.name}: {field.type}")
    return 0
