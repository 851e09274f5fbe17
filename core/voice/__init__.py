"""Voice turns: voice activity detection, endpointing and the end-of-turn model."""
