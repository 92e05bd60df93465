"""The serve room: `overlay-tui serve`, an asyncssh server (server) that admits public keys (keys, auth)
and gives each session its own console process on a pty (session, pty, spare)."""
