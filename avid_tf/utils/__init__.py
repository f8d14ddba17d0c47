"""Small helpers shared across avid_tf: atomic file writes, process pools."""
