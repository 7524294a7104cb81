"""qa-bot: answer questions from stored articles with an extractive reader and exact sentence citations."""

__version__ = "0.1.0"
__all__ = ["__version__"]
