"""Image tests: the Packer template (fast) and the image test suite against a debootstrapped root (slow)."""

from __future__ import annotations


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "image: builds a Debian root with debootstrap and runs the Packer provisioners and the image "
        "test suite in it (root, debootstrap, network to the Debian mirror; never skipped in CI)",
    )
