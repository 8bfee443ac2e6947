"""Importers and exporters of network formats (one module per format)."""
