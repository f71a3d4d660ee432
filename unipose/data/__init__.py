"""Pose and text corpora: loaders for the formats users have, and the synthetic corpora generated offline."""
