"""Model theft: stealing a model through its prediction API, detecting it, and proving ownership."""
