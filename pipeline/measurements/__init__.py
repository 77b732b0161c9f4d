"""Measurements on segmented structures: nerve CSA and shape, muscle thickness, echogenicity."""
