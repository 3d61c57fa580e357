"""The simulator: the production bot and the embedded exchange in one process on virtual time."""
