"""Fixtures of the verify tests: the Packer double on PATH and a seeded sandbox (tests/helpers/image_fixtures.py)."""

from tests.helpers.image_fixtures import packer_env, seeded  # noqa: F401
