"""Triggers: no business logic; polling rules as botocore waiter JSON (../waiters) where a waiter fits.

Trigger modules run in the triggerer and may import the provider at module level.
"""
