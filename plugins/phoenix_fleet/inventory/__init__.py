"""Fleet inventory: collectors (one paginated sweep per region) and report renderers."""
