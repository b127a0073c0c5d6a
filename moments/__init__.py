"""Moments: the friends' feed with WeChat's visibility rules (see docs/moments.md)."""
