"""Geofences ("electronic fences"): definitions, validation and the decision engine.

See docs/geofences.md. Modules are imported directly (``geofences.decision``,
``geofences.engine``, …) so that importing the types does not pull in Shapely.
"""
