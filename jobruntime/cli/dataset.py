"""``jobruntime dataset``: a data owner encrypts, decrypts and inspects its datasets."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from jobruntime.cli.common import add_connection, client_from
from jobruntime.controlplane.client import ControlPlaneClient
from jobruntime.dataset import owner
from jobruntime.dataset.keyops import LocalMasterKey
from jobruntime.dataset.registry import ControlPlaneRegistry
from jobruntime.storage.uri import canonical_uri, open_storage

console = Console(stderr=True)


def register(sub: Any) -> None:
    p = sub.add_parser("dataset", help="encrypt, decrypt and inspect encrypted datasets")
    ds = p.add_subparsers(dest="dataset_command", required=True)

    e = ds.add_parser("encrypt", help="encrypt a CSV or Parquet file into a new dataset version")
    e.add_argument("source", type=Path)
    e.add_argument(
        "--to",
        required=True,
        type=canonical_uri,
        help="dataset URI: a path (made absolute), file:// or az://",
    )
    e.add_argument("--key", required=True, help="the dataset master key id (ORG/NAME)")
    e.add_argument("--rows-per-file", type=int, default=1_000_000)
    add_connection(e, "")
    e.set_defaults(handler=encrypt)

    d = ds.add_parser("decrypt", help="decrypt the latest version into a file only you read")
    d.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
    d.add_argument("--to", type=Path, required=True, help="a .parquet or .csv file")
    d.add_argument(
        "--key",
        help="the dataset master key id (ORG/NAME); default: the one the manifest names "
        "(the key then authenticates the manifest)",
    )
    add_connection(d, "")
    d.set_defaults(handler=decrypt)

    i = ds.add_parser("inspect", help="manifest, schema, rows and version; no key, no values")
    i.add_argument("uri", type=canonical_uri, help="dataset URI: a path, file:// or az://")
    i.set_defaults(handler=inspect)


@contextmanager
def _owner(args: argparse.Namespace) -> Iterator[ControlPlaneClient]:
    if not args.principal:
        args.principal = f"owner:{args.key.split('/', 1)[0]}"
    with client_from(args) as client:
        yield client


@contextmanager
def _progress(title: str) -> Iterator[Any]:
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
    schema, batches = owner.source_batches(args.source)  # a bad source fails before any key
    with _owner(args) as client, _progress(f"encrypting {args.source.name}") as progress:
        registry = ControlPlaneRegistry(client, args.to, args.key)
        manifest = owner.encrypt(
            schema,
            batches,
            open_storage(args.to),
            args.to,
            LocalMasterKey(args.key, client.owner_key(args.key)),
            registry,
            args.rows_per_file,
            progress,
        )
    print(
        f"{args.to}: version {manifest.version}, {manifest.rows:,} rows in "
        f"{len(manifest.files)} files, manifest {manifest.digest}"
    )
    return 0


def decrypt(args: argparse.Namespace) -> int:
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
