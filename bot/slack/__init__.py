"""The Slack shell: the Bolt app (`app`), its listeners by kind (`listeners`), Block Kit messages (`blocks`),
mrkdwn escaping (`escape`) and the HTTP / Socket Mode server (`server`)."""
