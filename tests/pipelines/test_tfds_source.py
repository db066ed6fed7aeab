"""TFDS as the data source: a download this machine cannot make fails in seconds, cleanly."""

from __future__ import annotations

import pytest

from harness.errors import UserError
from pipelines import tfds_source


def test_an_unreachable_download_host_fails_at_once_and_leaves_no_folders(tmp_path, monkeypatch):
    """Offline, TFDS would print progress bars, make its download folders and retry for
    minutes: the probe answers first, with the offline import to run instead."""
    from tensorflow_datasets.core import dataset_builder

    probed = []

    def unreachable(host, port):
        probed.append((host, port))
        raise OSError(101, "Network is unreachable")

    def no_download(*args, **kwargs):
        raise AssertionError("TFDS started a download the probe should have refused")

    monkeypatch.setattr(tfds_source, "probe", unreachable)
    monkeypatch.setattr(dataset_builder.DatasetBuilder, "download_and_prepare", no_download)
    data_dir = tmp_path / "data"
    with pytest.raises(UserError) as error:
        tfds_source.ensure_prepared("fashion_mnist", data_dir, download=True)
    message = str(error.value)
    assert message.splitlines() == [message]
    assert message.startswith("download failed (cannot reach fashion-mnist.")
    assert "Network is unreachable" in message
    assert "harness data import fashion_mnist PATH/TO/fashion_mnist.npz" in message
    assert probed == [("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80)]
    assert not data_dir.exists()


def test_download_endpoints_go_through_the_proxy_unless_bypassed(monkeypatch):
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    urls = ["https://a.example/x", "https://a.example/y", "http://b.example:8080/z"]
    assert tfds_source.download_endpoints(urls) == [("a.example", 443), ("b.example", 8080)]
    monkeypatch.setenv("https_proxy", "proxy.example:3128")
    monkeypatch.setenv("no_proxy", "b.example")
    assert tfds_source.download_endpoints(urls) == [("proxy.example", 3128), ("b.example", 8080)]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "fashion_mnist:9.9.9",
            "Dataset fashion_mnist cannot be loaded at version 9.9.9, only: 3.0.1.",
        ),
        ("imdb_reviews/nope", "BuilderConfig nope not found with version None."),
    ],
)
def test_a_version_or_config_the_dataset_lacks_is_one_line(tmp_path, name, reason):
    with pytest.raises(UserError) as error:
        tfds_source.builder(name, tmp_path)
    assert str(error.value) == f"data.dataset: {name!r}: {reason}"
