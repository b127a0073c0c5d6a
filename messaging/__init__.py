"""1:1 and group chat, media, live streams. Not built yet: see the messaging issue."""
