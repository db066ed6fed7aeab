"""TensorFlow Datasets as the source of every named dataset, online or offline.

The data directory is, in order: the job's `data.data_dir`, `$HARNESS_DATA_DIR`,
`$TFDS_DATA_DIR`, `~/tensorflow_datasets`. With internet, TFDS downloads and prepares a dataset
there; without, `harness data import NAME FILE` writes a local copy there in TFDS's own format,
so `tfds.load(NAME, data_dir=...)` reads it the same way.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import socket
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path
from unittest import mock

from harness_core.errors import UserError
from pipelines import IMPORTERS


def resolve_data_dir(configured: str | None = None) -> Path:
    value = (
        configured
        or os.environ.get("HARNESS_DATA_DIR")
        or os.environ.get("TFDS_DATA_DIR")
        or "~/tensorflow_datasets"
    )
    return Path(value).expanduser().resolve()


@functools.cache
def known_datasets() -> frozenset[str]:
    import tensorflow_datasets as tfds

    return frozenset(tfds.list_builders(with_community_datasets=False))


def check_dataset_name(name: str) -> None:
    base = name.split("/")[0].split(":")[0]
    if base in IMPORTERS.names():  # offline-importable names are TFDS names: no TFDS import
        return
    if base in known_datasets():
        return
    close = difflib.get_close_matches(base, sorted(known_datasets()), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    raise UserError(
        f"data.dataset: {name!r} is not a TFDS dataset{hint}; importable offline: "
        f"{', '.join(IMPORTERS.names())}; any name from tfds.list_builders() works online"
    )


@contextlib.contextmanager
def no_bucket_lookup() -> Iterator[None]:
    """While building a TFDS builder for a dataset not yet prepared: skip TFDS's look-up of
    its metadata on GCS when TFDS has GCS access off (its default). The look-up would then
    find nothing, but it makes a temporary directory first and leaves it behind: one empty
    `/tmp/tmp*tfds` per builder, hundreds over a day of jobs and tests."""
    from tensorflow_datasets.core import dataset_info
    from tensorflow_datasets.core.utils import gcs_utils

    if not getattr(gcs_utils, "_is_gcs_disabled", False):
        yield
        return
    with mock.patch.object(dataset_info.DatasetInfo, "initialize_from_bucket", lambda self: None):
        yield


def builder(name: str, data_dir: Path):
    import tensorflow_datasets as tfds

    try:
        with no_bucket_lookup():
            return tfds.builder(name, data_dir=str(data_dir))
    except (ValueError, AssertionError) as e:  # a version or config the dataset does not have
        message = str(e)
        if not message.startswith("Failed to construct dataset"):
            raise
        reason = message.split('": ', 1)[-1].split(" Here are")[0].strip()
        raise UserError(f"data.dataset: {name!r}: {reason}") from None


def missing_message(name: str, data_dir: Path) -> str:
    if name in IMPORTERS.names():
        importer = IMPORTERS.get(name)
        return (
            f"dataset {name!r} is not prepared in the data directory {data_dir}; import a local "
            f"copy with: harness data import {name} PATH/TO/{importer.filename} "
            f"--data-dir {data_dir}"
        )
    return (
        f"dataset {name!r} is not prepared in the data directory {data_dir} and has no offline "
        "importer; run once with internet access and data.download: true to prepare it"
    )


def surely_missing(name: str, data_dir: Path) -> bool:
    """No version of `name` was ever prepared under `data_dir`: a look at the files, without
    importing TFDS or TensorFlow (`ensure_prepared` is the full check)."""
    return not any((data_dir / name.split(":")[0]).glob("**/dataset_info.json"))


# Seconds to wait for a download host to accept a connection. Offline, DNS usually fails at
# once; a firewall that drops packets makes the probe wait this long per host.
PROBE_TIMEOUT_S = 3.0


def download_endpoints(urls: Iterable[str]) -> list[tuple[str, int]]:
    """The (host, port) each URL's request first connects to: the URL's host, or the proxy
    that `requests` (TFDS's downloader) would use for it from the *_proxy variables."""
    proxies = urllib.request.getproxies()
    endpoints = []
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        proxy = proxies.get(parts.scheme)
        if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
            parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        endpoint = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        if endpoint not in endpoints:
            endpoints.append(endpoint)
    return endpoints


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> None:
    """Opens and closes a TCP connection; OSError when `host:port` cannot be reached."""
    socket.create_connection((host, port), timeout=timeout).close()


def refuse_unreachable_download(b, name: str, data_dir: Path) -> None:
    """UserError, within seconds, when a host the dataset downloads from cannot be reached.
    Without this, TFDS prints its progress bars, creates its download folders and retries
    each request with back-off for minutes before it fails. The URLs come from the builder's
    checksums file; a dataset without one is left to TFDS."""
    for host, port in download_endpoints(b.url_infos or {}):
        try:
            probe(host, port)
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise UserError(
                f"download failed (cannot reach {host}:{port}: {reason}); "
                f"{missing_message(name, data_dir)}"
            ) from None


def ensure_prepared(name: str, data_dir: Path, download: bool) -> None:
    """Makes sure `name` can be loaded from `data_dir`, downloading it if allowed."""
    b = builder(name, data_dir)
    if b.is_prepared():
        return
    if not download:
        raise UserError(missing_message(name, data_dir))
    refuse_unreachable_download(b, name, data_dir)
    import logging

    # TFDS retries a failed request 10 times with back-off (~3 minutes offline), and urllib3
    # logs a warning line for each retry over TFDS's own progress bars: the error says it once.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    try:
        b.download_and_prepare()
    except Exception as e:  # no network, server error, ...: the offline path is the answer
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise UserError(f"download failed ({first}); {missing_message(name, data_dir)}") from None


def load(name: str, split: str, data_dir: Path):
    """A `(features, label)` dataset of one split slice, read in a fixed order."""
    import tensorflow_datasets as tfds

    return tfds.load(
        name,
        split=split,
        data_dir=str(data_dir),
        download=False,
        as_supervised=True,
        shuffle_files=False,
    )
