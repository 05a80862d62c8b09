"""Operators: bake, verify, publish, apply, recycle.

House rule: operator modules are imported by DAG files at parse time, so they import only
``airflow.sdk``, the standard library and our pure modules at module level. AWS hooks, triggers,
the Amazon provider and boto3 are imported inside the methods that run on a worker.
"""
