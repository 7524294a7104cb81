"""User-facing message templates (data only); rendered by bot.messages."""
