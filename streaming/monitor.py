"""The monitor service: `lakecast stream monitor` as a script."""

import sys

from lakecast.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "stream", "monitor", *sys.argv[1:]]
    main()
