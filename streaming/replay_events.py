"""Replay the events Delta table into the events topic: `lakecast stream replay` as a script."""

import sys

from lakecast.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "stream", "replay", *sys.argv[1:]]
    main()
