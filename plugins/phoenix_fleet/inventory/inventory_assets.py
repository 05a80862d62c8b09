"""The Asset the nightly inventory emits (and fleet_max_age consumes).

Custom URI schemes are accepted by Airflow 3.3 as opaque strings; the ``x-`` prefix marks a scheme no provider
defines (Airflow skips URI normalisation for it). Each event's ``extra``: ``{"stale", "instances",
"behind_latest", "asgs_drifted", "path", "s3_uri", "generated_at", "regions"}`` (see docs/inventory.md).
"""

from __future__ import annotations

from airflow.sdk import Asset

INVENTORY_ASSET_NAME = "phoenix_fleet_inventory"
INVENTORY_ASSET_URI = "x-phoenix://inventory/fleet"
INVENTORY_ASSET = Asset(name=INVENTORY_ASSET_NAME, uri=INVENTORY_ASSET_URI, group="phoenix-fleet")
