"""Distributional RL: C51 (discrete actions) and D4PG (continuous, Ray actors). ``categorical.py`` holds what both
share: the fixed support of atoms, the projection of a shifted return distribution back onto it, and the
cross-entropy that trains a categorical critic."""
