"""Thin clients: AWS hooks on the Amazon provider's AwsBaseHook, and the Packer/Terraform CLIs.

Hook modules may import the provider and boto3 at module level: they are loaded only when a task runs.
"""
