"""The video volume's off-site copy: plan, transfer, sync and pull, the listing snapshot."""
