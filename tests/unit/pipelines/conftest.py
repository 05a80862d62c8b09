"""Fixtures of the pipeline tests that read the sandbox: a seeded sandbox (tests/helpers/image_fixtures.py)."""

from tests.helpers.image_fixtures import seeded  # noqa: F401
