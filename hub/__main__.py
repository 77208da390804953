from hub.cli import entry

entry()
