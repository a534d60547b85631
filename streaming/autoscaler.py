"""The autoscaler service: `lakecast stream autoscaler` as a script."""

import sys

from lakecast.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "stream", "autoscaler", *sys.argv[1:]]
    main()
