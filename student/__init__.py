"""Student side: models, losses, trainer (see the trainer issue)."""
