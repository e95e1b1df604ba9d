"""Issue 11 (Trust): the network, logins, tokens and secrets."""
