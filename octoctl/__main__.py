"""Allow ``python -m octoctl``."""

from octoctl.cli import main

if __name__ == "__main__":
    main()
