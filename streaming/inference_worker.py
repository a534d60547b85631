"""The online inference worker: `lakecast stream worker` as a script.

python streaming/inference_worker.py --model purchase@champion --processes 2
"""

import sys

from lakecast.cli.main import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "stream", "worker", *sys.argv[1:]]
    main()
