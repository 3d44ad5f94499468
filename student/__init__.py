"""Student side: configurations, models, losses, the stream of targets and the recipes."""
