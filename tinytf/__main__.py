"""`python -m tinytf COMMAND ...`: the command line in `tinytf.cli`."""

import sys

from tinytf.cli import main

if __name__ == "__main__":
    sys.exit(main())
