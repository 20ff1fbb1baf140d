"""`hearth`: a small command line for the Hearth control plane API (adapters for now)."""
