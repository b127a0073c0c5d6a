"""1:1 and group chat over REST and the /ws/ socket, media, recall, search, push (docs/messaging.md)."""
